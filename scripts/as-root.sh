# Sourced by the ensure-*.sh scripts: run a command as root, directly or through sudo.
# The sourcing script defines say().
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*"
        exit 1
    fi
}
