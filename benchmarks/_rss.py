"""Run a command, print its peak RSS in MiB on the first line, then its stdout."""

import resource
import subprocess
import sys

proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if proc.returncode != 0:
    sys.stderr.write(proc.stderr)
    sys.exit(proc.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
sys.stdout.write(proc.stdout)
