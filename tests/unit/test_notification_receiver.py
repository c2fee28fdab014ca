"""The demo webhook receiver (services/notification/receiver.py): its rules, and its routes
in-process."""

import httpx
import pytest

from services.notification.receiver import HOOK_PATH, Answer, Receiver, receiver_app

pytestmark = pytest.mark.unit


def test_it_refuses_each_keys_first_posts_then_takes_it_and_knows_a_copy() -> None:
    receiver = Receiver(fail_first=1)
    answers = [receiver.answer("k", {"n": 1}) for _ in range(3)]
    assert answers == [Answer(503), Answer(200), Answer(200, duplicate=True)]
    assert receiver.answer("other", {}) == Answer(503)  # counted per key
    assert (receiver.taken, receiver.posts()) == ({"k": {"n": 1}}, {"k": 3, "other": 1})


def test_always_failing_refuses_every_post_and_a_slow_one_takes_it_late() -> None:
    assert Receiver(always_fail=True, fail_status=500, fail_first=0).answer("k", {}).status == 500
    assert Receiver(slow_first=2.5).answer("k", {}) == Answer(200, delay=2.5)


async def test_its_routes_take_once_by_key_and_tell_what_they_took() -> None:
    transport = httpx.ASGITransport(app=receiver_app(Receiver(fail_first=1)))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        posts = [
            await client.post(HOOK_PATH, json={"n": 1}, headers={"Idempotency-Key": "k"})
            for _ in range(3)
        ]
        keyless = await client.post(HOOK_PATH, json={"n": 2})
        received = (await client.get("/received")).json()

    assert [post.status_code for post in posts] == [503, 200, 200]
    assert [post.json()["duplicate"] for post in posts[1:]] == [False, True]
    assert keyless.status_code == 422
    assert received == {"taken": [{"n": 1}], "duplicates": {"k": 1}, "refused": 1}


async def test_it_is_told_to_fail_and_mend_while_it_runs_and_tells_one_keys_posts() -> None:
    transport = httpx.ASGITransport(app=receiver_app(Receiver()))
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as client:
        assert (await client.get("/readyz")).status_code == 200
        told = await client.put("/behaviour", json={"always_fail": True, "fail_status": 500})
        refused = await client.post(HOOK_PATH, json={}, headers={"Idempotency-Key": "k"})
        mended = await client.put("/behaviour", json={})
        taken = await client.post(HOOK_PATH, json={}, headers={"Idempotency-Key": "k"})
        copy = await client.post(HOOK_PATH, json={}, headers={"Idempotency-Key": "k"})
        of_k = (await client.get("/received/k")).json()
        of_unknown = (await client.get("/received/nobody")).json()
        bad = await client.put("/behaviour", json={"fail_first": -1})

    assert told.json() == {
        "fail_first": 0,
        "fail_status": 500,
        "always_fail": True,
        "slow_first": 0.0,
    }
    assert (refused.status_code, mended.json()["always_fail"]) == (500, False)
    assert (taken.json(), copy.json()) == ({"duplicate": False}, {"duplicate": True})
    assert of_k == {"taken": True, "posts": 3, "refused": 1, "duplicates": 1}
    assert of_unknown == {"taken": False, "posts": 0, "refused": 0, "duplicates": 0}
    assert bad.status_code == 422
