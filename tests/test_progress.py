"""bench.progress: a method's long loop reports to the installed hook, and is the bare loop without one."""

from bench.progress import labelled, reporting, track


def test_without_a_reporter_track_is_the_bare_iterable():
    assert list(track(iter([3, 1, 2]), "loop")) == [3, 1, 2]  # no len() needed either


def test_reports_start_and_end_under_the_label_and_restores_the_previous_state():
    calls = []
    with reporting(lambda *a: calls.append(a)):
        with labelled("variant · edit"):
            assert list(track(range(4), "fit", every_s=3600)) == [0, 1, 2, 3]
        list(track(range(2), "other", every_s=0))
    assert calls[:2] == [("variant · edit: fit", 0, 4), ("variant · edit: fit", 1, 4)]  # first item reported
    assert calls[2] == ("variant · edit: fit", 4, 4)  # the end, though within every_s
    assert calls[3:] == [("other", 0, 2), ("other", 1, 2), ("other", 2, 2)]  # label gone with its block
    calls.clear()
    list(track(range(2), "after"))
    assert calls == []  # the hook is gone with its block


def test_a_loop_left_early_reports_where_it_stopped():
    calls = []
    with reporting(lambda *a: calls.append(a)):
        for i in track(range(10), "early stop", every_s=0):
            if i == 2:
                break
    assert calls[-1] == ("early stop", 2, 10)
