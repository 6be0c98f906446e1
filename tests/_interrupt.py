"""Ctrl-C tests: run a child Python, interrupt it once it says it is ready."""
import select
import signal
import subprocess
import sys
import time


def interrupt_child(code, args=(), *, cwd, ready="started", delay=0.3, wait=300,
                    timeout=10):
    """Run ``code`` (with ``args``) in a child Python in ``cwd`` (outside the
    checkout, so that the installed package is imported); once it prints the
    line ``ready``, wait ``delay`` seconds and send SIGINT.  ``wait`` allows for
    the import rebuilding the editable package first.

    Returns (stdout after the ready line, stderr, return code, seconds from
    the signal to the child's exit)."""
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd)
    try:
        readable, _, _ = select.select([proc.stdout], [], [], wait)
        assert readable, f"the child never printed {ready!r}"
        line = proc.stdout.readline()
        assert line.strip() == ready, (line, proc.stderr.read())
        time.sleep(delay)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=timeout)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out, err, proc.returncode, elapsed
