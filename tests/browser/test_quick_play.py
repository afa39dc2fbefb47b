"""The browser client against bots (issue 16): "Play now" in an empty service, a whole game against a bot, and the
client fixes found on the way (the replay's move list in view, the Ready button's name, top players who played).

The service here counts down 4 s before bots come and bots roll within 0.1 s, so the game runs in seconds.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

from tests.browser.helpers import Service, User

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says why (skip, or fail under GAMESVC_REQUIRE_BROWSER=1)
    if os.environ.get("GAMESVC_REQUIRE_BROWSER", "") == "1":
        raise
    pytest.skip("playwright is not installed: pip install -e '.[test]'", allow_module_level=True)

from tests.browser.test_client import body, roll, seat, sign_up_over_http, wait_watching

pytestmark = pytest.mark.browser

# A seed whose first two-player game takes 39 rolls (20 of them the first player's) on the fair dice of the seeds
# it fixes: enough moves that the replay's move list scrolls.
LONG_GAME_SEED = 23
LONG_GAME_ROLLS = 39

# Until the game is over or it is `me`'s turn with Roll ready: bots' turns pass by themselves.
MY_TURN_JS = """(me) => {
  const room = document.querySelector('[data-testid=room]');
  if (!room) return null;
  if (room.dataset.status === 'finished') return {over: true};
  const seat = document.querySelector('[data-testid=seat][data-turn=true]');
  const roll = document.querySelector('[data-testid=roll]');
  if (seat && seat.dataset.username === me && roll.classList.contains('pulse') && !roll.disabled) return {turn: me};
  return null;
}"""


@pytest.fixture(scope="module")
def service(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service with a short quick-play wait, quick bots and two-seat quick-play rooms."""
    base = tmp_path_factory.mktemp("bots-service")
    svc = Service(
        base / "data", "--dice-seed", str(LONG_GAME_SEED), "--turn-seconds", "30", "--bot-delay", "0.05",
        "--quick-play-wait", "4", "--quick-play-seats", "2",
    )
    try:
        yield svc
    finally:
        svc.stop()


def test_play_now_against_a_bot_to_game_over(users: Callable[..., User], screenshot: Callable[..., Any]) -> None:
    """One person presses "Play now" in an empty service: a room opens counting down, a bot (marked in the players
    list and on the board) takes the free seat, the game starts, the person rolls on their turns and the bot on its
    own, to game over. The Ready button is named just "Ready"; the game is in the person's history, marked, but not
    on the leaderboard, whose top players list only players with games; the replay keeps the last move in view."""
    ada = users("ada")
    # Bots here roll faster than a token walks: without animations the game over shows as soon as it comes.
    ada.page.emulate_media(reduced_motion="reduce")
    sign_up_over_http(ada)
    wait_watching(ada)
    # ada has no games yet: the lobby's top players leave her out (the full leaderboard lists every account).
    expect(ada.page.locator(".top-players")).to_have_text("No games played yet.")
    ada.tid("play-now").click()
    room = ada.tid("room")
    expect(room).to_have_attribute("data-status", "waiting")
    expect(ada.tid("bots-countdown")).to_be_visible()
    expect(ada.tid("bots-countdown")).to_contain_text("Bots take the free seats in")
    # Quick play readies the player; the check mark is decoration, not part of the button's name.
    expect(ada.page.get_by_role("button", name="Ready", exact=True)).to_have_attribute("aria-pressed", "true")
    screenshot(ada.page, "quick-play-countdown", docs=False)

    expect(room).to_have_attribute("data-status", "playing")
    bot = ada.page.locator("[data-testid=seat][data-bot=true]")
    expect(bot).to_have_count(1)
    expect(bot.get_by_test_id("bot-badge")).to_have_text("Bot")
    bot_name = bot.get_attribute("data-username")
    assert bot_name and bot_name.startswith("Bot ")
    expect(ada.page.locator(f'[data-testid=token][data-username="{bot_name}"]')).to_have_attribute("data-bot", "true")
    expect(seat(ada, "ada")).to_have_attribute("data-bot", "false")

    rolls = 0
    while not ada.page.wait_for_function(MY_TURN_JS, arg="ada").json_value().get("over"):
        roll(ada)
        rolls += 1
        assert rolls < 100, "the game does not end"
    expect(ada.tid("game-over")).to_be_visible()
    expect(ada.page.locator("[data-testid=standing]")).to_have_count(2)
    screenshot(ada.page, "bot-game-over", docs=False)
    # Bot games leave the stats alone.
    expect(ada.tid("current-user")).to_contain_text("0 wins · 0 games")

    ada.tid("my-games").click()
    game_row = ada.page.locator("[data-testid=game-row]")
    expect(game_row).to_have_count(1)
    expect(game_row.get_by_test_id("game-bot")).to_have_count(1)
    expect(game_row).to_contain_text("Not ranked")
    game_row.get_by_test_id("replay-link").click()
    expect(body(ada)).to_have_attribute("data-view", "replay")
    ada.tid("replay-last").click()
    expect(ada.tid("replay-step")).to_have_attribute("data-step", str(LONG_GAME_ROLLS))
    in_view = ada.page.evaluate("""() => {
      const list = document.querySelector('[data-testid=replay-entries]');
      const item = list.querySelector('[aria-current=step]');
      // Measured in fractional pixels: offsetTop and offsetHeight are rounded, and can overshoot the list by one.
      const box = list.getBoundingClientRect();
      const at = item.getBoundingClientRect();
      return list.scrollHeight > list.clientHeight && at.top >= box.top - 0.5 && at.bottom <= box.bottom + 0.5;
    }""")
    assert in_view, "the replay's move list does not show the current move"

    ada.tid("nav-leaderboard").click()
    expect(body(ada)).to_have_attribute("data-view", "leaderboard")
    expect(ada.page.locator(f'[data-testid=leaderboard-row][data-username="{bot_name}"]')).to_have_count(0)
    ada.console.assert_clean()
