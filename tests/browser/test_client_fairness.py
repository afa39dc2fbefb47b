"""Browser tests of the provably fair dice (docs/fairness.md): the client's WebCrypto check gives the known answers,
verifies a real game's replay, and shows an unmistakable warning for a tampered record."""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import pytest

from gamesvc import fairness
from tests.browser.helpers import User, require_browser

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says why (skip, or fail under GAMESVC_REQUIRE_BROWSER=1)
    if require_browser():
        raise
    pytest.skip("playwright is not installed: pip install -e '.[test]'", allow_module_level=True)

from tests.browser.test_client import body, create_room, roll, seat, sign_up_in_browser, whose_turn

pytestmark = pytest.mark.browser

KNOWN_ANSWERS_JS = """async () => {
  const f = await import('/fairness.js');
  const vector = async (seedHex, seeds, count) => {
    const seed = Uint8Array.from(seedHex.match(/../g), (x) => parseInt(x, 16));
    const key = await crypto.subtle.importKey('raw', seed, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const dice = [];
    for (let n = 0; n < count; n += 1) dice.push(await f.dieOf(key, seeds, n));
    return { commit: await f.sha256Hex(seed), dice, die98: await f.dieOf(key, seeds, 98) };
  };
  return {
    a: await vector('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', ['alice-seed', 'bob-seed'], 20),
    b: await vector('1c969c2f2efaaa99aeaa69d7353f120b164a5649910a71ec4859189285220dd5',
      ['7f3a9c01d2e4b685', 'Hello, world! ~ 42', 'x'], 20),
    seed: f.newClientSeed(),
  };
}"""


def test_webcrypto_gives_the_known_answers(users: Callable[..., User]) -> None:
    """The browser's fairness.js computes the commits and dice of docs/fairness.md's vectors A and B, exactly as
    gamesvc.fairness does, and makes 16-hex-digit client seeds."""
    ivy = users("ivy")
    ivy.open()
    got = ivy.page.evaluate(KNOWN_ANSWERS_JS)
    for name, seed, seeds in (
        ("a", bytes(range(32)), ["alice-seed", "bob-seed"]),
        ("b", bytes.fromhex("1c969c2f2efaaa99aeaa69d7353f120b164a5649910a71ec4859189285220dd5"),
         ["7f3a9c01d2e4b685", "Hello, world! ~ 42", "x"]),
    ):
        assert got[name]["commit"] == fairness.commit_of(seed)
        assert got[name]["dice"] == [fairness.die(seed, seeds, n) for n in range(20)]
        assert got[name]["die98"] == fairness.die(seed, seeds, 98)
    assert got["a"]["dice"] == [5, 1, 6, 1, 5, 5, 1, 3, 4, 5, 2, 6, 5, 3, 2, 3, 1, 2, 5, 4]
    assert len(got["seed"]) == 16 and fairness.valid_client_seed(got["seed"])
    ivy.console.assert_clean()


def play_a_game(a: User, b: User) -> str:
    """Two users sign up, sit, type their dice seeds, ready up and roll to game over; returns the game's id."""
    for user in (a, b):
        user.open()
        sign_up_in_browser(user)
    room_id = create_room(a, "Fair race")
    b.page.locator("#join-code [name=code]").fill(room_id)
    b.tid("join-code-submit").click()
    expect(b.tid("room")).to_have_attribute("data-room-id", room_id)
    for user in (a, b):
        expect(seat(user, b.name)).to_be_visible()
        user.tid("client-seed").fill(f"{user.name}-seed")
        user.tid("ready").click()
    players = {a.name: a, b.name: b}
    while (turn := whose_turn(a)) is not None:
        roll(players[turn])
    expect(a.tid("view-replay")).to_be_visible()
    href = a.tid("view-replay").get_attribute("href")
    assert href and href.startswith("#/replay/")
    return href.rsplit("/", 1)[1]


def serve(text: str) -> Callable[[Any], None]:
    """A Playwright route handler that answers with TEXT as JSON, in place of the server."""

    def handle(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json", body=text)

    return handle


def test_a_tampered_record_shows_the_warning(users: Callable[..., User], screenshot: Callable[..., Any]) -> None:
    """A real game ends 'verified fair' for both players and in its replay; the same replay served with one die
    changed, or with another server seed, shows the warning (an alert naming the problem) instead; a record without
    fairness data gets a plain note."""
    alice, bob = users("alice"), users("bob")
    game_id = play_a_game(alice, bob)
    for user in (alice, bob):
        expect(user.tid("fairness")).to_have_attribute("data-verdict", "verified")

    alice.page.goto(f"/#/replay/{game_id}")
    expect(body(alice)).to_have_attribute("data-view", "replay")
    expect(alice.tid("fairness")).to_have_attribute("data-verdict", "verified")
    expect(alice.tid("fairness")).to_contain_text("Verified fair")

    record = alice.context.request.get(f"/api/games/{game_id}").json()["game"]
    assert fairness.verify_record(record) == []
    one_die = copy.deepcopy(record)
    rolls = [e for e in one_die["entries"] if "dice" in e]
    rolls[3]["dice"] = rolls[3]["dice"] % 6 + 1
    other_seed = copy.deepcopy(record)
    other_seed["fairness"]["server_seed"] = bytes(32).hex()
    other_seed["fairness"]["commit"] = fairness.commit_of(bytes(32))

    for tampered, problem in ((one_die, "Roll 3 shows"), (other_seed, "but the seeds give")):
        alice.page.route(f"**/api/games/{game_id}", serve(json.dumps({"game": tampered})))
        alice.page.goto("/#/lobby")
        alice.page.goto(f"/#/replay/{game_id}")
        warning = alice.tid("fairness")
        expect(warning).to_have_attribute("data-verdict", "failed")
        expect(warning).to_have_attribute("role", "alert")
        expect(warning).to_contain_text("could NOT be verified")
        expect(warning).to_contain_text(problem)
        alice.page.unroute(f"**/api/games/{game_id}")
    screenshot(alice.page, "replay-tampered", docs=False)

    # A record from before fair dice has nothing to check: a plain note, not the warning.
    legacy = {k: v for k, v in record.items() if k != "fairness"}
    alice.page.route(f"**/api/games/{game_id}", serve(json.dumps({"game": legacy})))
    alice.page.goto("/#/lobby")
    alice.page.goto(f"/#/replay/{game_id}")
    expect(alice.tid("fairness")).to_have_attribute("data-verdict", "unavailable")
    expect(alice.tid("fairness")).to_contain_text("before provably fair dice")
    for user in (alice, bob):
        user.console.assert_clean()
