#!/bin/sh
# Make sure a Chromium browser and its ChromeDriver exist for the UI tests (tests/ui/), which
# drive a headless Chromium through Selenium against a real `dagster dev`. Installs Debian's
# `chromium` and `chromium-driver` packages when either command is missing. Quick and silent
# when there is nothing to do; safe to run any number of times.
set -eu

say() { echo "ensure-chromium: $*" >&2; }

. "$(dirname "$0")/as-root.sh"

present() {
    command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
}

install_debian_chromium() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no chromium and chromedriver found and no apt-get to install them:"
        say "install Chromium and a matching ChromeDriver so that both are on PATH"
        exit 1
    fi
    say "installing Debian's chromium and chromium-driver packages (browser for the UI tests)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium chromium-driver
}

if ! present; then
    install_debian_chromium
    if ! present; then
        say "chromium and chromium-driver installed, but chromium or chromedriver is not on PATH"
        exit 1
    fi
fi
