"""``graphattn.progress.track``: tqdm's bar on a terminal, plain lines elsewhere."""
import io
import re

from graphattn.progress import track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_without_carriage_returns_off_a_terminal():
    out = io.StringIO()
    assert list(track(range(100), "processing", file=out, min_interval_s=0)) == list(range(100))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [re.match(r"processing: +(\d+)% (\d+)/100 \[", line).groups() for line in lines] == [
        (str(p), str(p)) for p in range(10, 101, 10)]


def test_quick_loops_stay_quiet_unless_kept():
    out = io.StringIO()
    list(track(range(1000), "epoch 1", file=out, leave=False))
    assert out.getvalue() == ""
    list(track(range(1000), "epoch 1", file=out))
    assert re.fullmatch(r"epoch 1: 100% 1,000/1,000 \[00:00<00:00, [\d,.]+ it/s\]\n", out.getvalue())


def test_unknown_total_reports_counts_at_the_interval():
    out = io.StringIO()
    list(track(iter(range(3)), "reading", file=out, interval_s=0))
    assert [line.split(" [")[0] for line in out.getvalue().splitlines()] == [
        "reading: 1", "reading: 2", "reading: 3"]


def test_terminal_gets_the_bar_and_disable_writes_nothing():
    tty = Terminal()
    list(track(range(5), "bar", file=tty))
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue()
    out = io.StringIO()
    items = [1, 2]
    assert track(items, file=out, disable=True) is items and out.getvalue() == ""
