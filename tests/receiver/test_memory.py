"""``settle_memory``: what a receiver process does to its memory when it starts serving. Each
test runs a process of its own, as the settings are the whole process's."""

import subprocess
import sys


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settling_freezes_what_the_process_holds():
    code = (
        "import gc; from receiver.memory import settle_memory; held = len(gc.get_objects()); "
        "settle_memory(); print(gc.get_freeze_count() >= held > 1000 > len(gc.get_objects()))"
    )
    assert run(code) == "True"  # none of it is scanned again


REQUESTS = """
import resource
{settle}
def request():  # a 6 MB body and two copies of it, all freed at the end of the request
    parts = [bytearray(6 * 1024 * 1024) for _ in range(3)]
for _ in range(3):
    request()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    request()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_body_sized_blocks_are_reused_without_new_page_faults():
    settled = REQUESTS.format(settle="from receiver.memory import settle_memory; settle_memory()")
    unsettled = REQUESTS.format(settle="")
    assert int(run(unsettled)) > 20 * 1000  # glibc's default: each request's pages anew
    assert int(run(settled)) < 100
