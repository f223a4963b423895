"""The subscription form's bounds, without any server: per client, mails overall, a bounded table."""

from __future__ import annotations

import threading

from hotspare.planning.subscription_limits import RequestLimits


def test_a_client_gets_a_few_requests_per_window_then_is_refused_until_it_slides():
    limits = RequestLimits(client_requests=3, client_window=600.0)
    assert [limits.allow_request("198.51.100.7", 10.0 + i) for i in range(3)] == [None, None, None]
    refusal = limits.allow_request("198.51.100.7", 20.0)
    assert refusal and "198.51.100.7" in refusal and "at most 3" in refusal
    assert limits.allow_request("203.0.113.9", 20.0) is None  # another client is not held back
    assert limits.allow_request("198.51.100.7", 611.0) is None  # the first request left the window


def test_confirmation_mails_overall_are_bounded_per_hour():
    limits = RequestLimits(mails=2, mail_window=3600.0)
    assert limits.allow_mail(0.0) is None and limits.allow_mail(1.0) is None
    assert "at most 2" in (limits.allow_mail(2.0) or "")
    assert limits.allow_mail(3601.0) is None


def test_the_client_table_forgets_the_longest_unseen_clients_first():
    limits = RequestLimits(client_requests=1, max_clients=2)
    for client in ("a", "b", "c"):
        assert limits.allow_request(client, 0.0) is None
    assert limits.allow_request("a", 1.0) is None  # forgotten: the table holds at most two clients
    assert limits.allow_request("c", 1.0) is not None


def test_parallel_requests_never_pass_more_than_the_bound():
    limits = RequestLimits(client_requests=5, mails=1000)
    passed: list[bool] = []
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(20):
            allowed = limits.allow_request("one", 0.0) is None
            with lock:
                passed.append(allowed)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert passed.count(True) == 5 and len(passed) == 160
