"""The browser client in a real headless Chromium against the real `twistd gamesvc` (issue 6).

Each test drives the page only through what a person can see and do (plus the data-testid hooks listed at the
top of gamesvc/static/app.js) and waits with Playwright's auto-waiting expect()/wait_for_function, never a sleep.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable

import pytest

from tests.browser.helpers import PASSWORD, Service, User

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says why (skip, or fail under GAMESVC_REQUIRE_BROWSER=1)
    if os.environ.get("GAMESVC_REQUIRE_BROWSER", "") == "1":
        raise
    pytest.skip("playwright is not installed: pip install -e '.[test]'", allow_module_level=True)

pytestmark = pytest.mark.browser

NO_ROOMS_YET = "No open rooms yet. Create one!"
XSS = "<img src=x onerror=alert(1)>"

# Whose turn it is, as a page shows it; null while that page's own roll request is still waiting for its reply
# (the reply follows the roll's events, so once it has come the page shows the next turn).
TURN_JS = """(me) => {
  const room = document.querySelector('[data-testid=room]');
  if (!room) return null;
  if (room.dataset.status === 'finished') return {over: true};
  const seat = document.querySelector('[data-testid=seat][data-turn=true]');
  if (!seat) return null;
  const roll = document.querySelector('[data-testid=roll]');
  if (seat.dataset.username === me && !roll.classList.contains('pulse')) return null;
  return {turn: seat.dataset.username};
}"""


def body(user: User) -> Any:
    return user.page.locator("body")


def seat(user: User, username: str) -> Any:
    return user.page.locator(f'[data-testid=seat][data-username="{username}"]')


def scroll_width(user: User) -> int:
    return user.page.evaluate("document.documentElement.scrollWidth")


def sign_up_in_browser(user: User) -> None:
    """Sign up with the signup form and land in the lobby, connected."""
    page = user.page
    expect(body(user)).to_have_attribute("data-view", "auth")
    form = page.locator("#signup-form")
    form.locator("[name=username]").fill(user.name)
    form.locator("[name=password]").fill(PASSWORD)
    user.tid("signup").click()
    expect(body(user)).to_have_attribute("data-view", "lobby")
    expect(user.tid("current-user")).to_have_attribute("data-username", user.name)
    expect(user.tid("conn-status")).to_have_attribute("data-state", "open")


def sign_up_over_http(user: User) -> None:
    """Sign up through the context's own request API (it shares the cookie jar), then open the lobby."""
    reply = user.context.request.post("/api/signup", data={"username": user.name, "password": PASSWORD})
    assert reply.ok, reply.text()
    user.open("/#/lobby")
    expect(body(user)).to_have_attribute("data-view", "lobby")
    expect(user.tid("conn-status")).to_have_attribute("data-state", "open")


def wait_watching(user: User) -> None:
    """Wait until the lobby has its room list from lobby.watch (the text is set whether or not rooms exist)."""
    expect(user.tid("room-list-empty")).to_have_text(NO_ROOMS_YET)


def create_room(user: User, name: str, seats: int = 2) -> str:
    """Create a room from the lobby form; returns its id once the room view shows it waiting."""
    form = user.page.locator("#create-room")
    form.locator("[name=name]").fill(name)
    form.locator("[name=seats]").select_option(str(seats))
    user.tid("create-room-submit").click()
    room = user.tid("room")
    expect(room).to_have_attribute("data-status", "waiting")
    room_id = room.get_attribute("data-room-id")
    assert room_id and re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", room_id)
    return room_id


def say(user: User, text: str) -> None:
    """Send a chat line with the chat form (Enter) and wait for the server to accept it (input cleared)."""
    user.tid("chat-input").fill(text)
    user.tid("chat-input").press("Enter")
    expect(user.tid("chat-input")).to_have_value("")


def last_chat(user: User, sender: str) -> Any:
    return user.page.locator(f'[data-testid=chat-message][data-from="{sender}"] .chat-text').last


def start_game(a: User, b: User) -> None:
    """Both press Ready; both pages show the game running."""
    a.tid("ready").click()
    expect(seat(b, a.name)).to_have_attribute("data-ready", "true")
    b.tid("ready").click()
    for user in (a, b):
        expect(user.tid("room")).to_have_attribute("data-status", "playing")


def whose_turn(user: User) -> str | None:
    """The player to roll next as user's page shows it, or None when the game is over."""
    state = user.page.wait_for_function(TURN_JS, arg=user.name).json_value()
    return None if state.get("over") else state["turn"]


def roll(user: User) -> None:
    """Press Roll once it is enabled (it is only enabled on the player's own turn)."""
    button = user.tid("roll")
    expect(button).to_be_enabled()
    button.click()


def test_two_players_sign_up_meet_play_chat_reload_and_rank(
    users: Callable[..., User], service: Service, screenshot: Callable[..., Any]
) -> None:
    """Two people sign up in their own browsers, meet in the lobby, where the room one creates appears live for the
    other, who joins; they chat both ways, ready up and play to game over by pressing Roll on their turns (the
    dice are seeded); leaving mid-game asks first; a reload mid-game comes back to the same seat and board; the
    header, leaderboard, game list and replay show the result; and no page logs a console error."""
    alice, bob = users("alice"), users("bob")

    alice.open()
    expect(alice.page.locator("#login-form")).to_be_visible()
    screenshot(alice.page, "login")
    sign_up_in_browser(alice)
    bob.open()
    sign_up_in_browser(bob)
    wait_watching(bob)

    room_id = create_room(alice, "Friday race")
    row = bob.page.locator(f'[data-testid=room-row][data-room-id="{room_id}"]')
    expect(row).to_contain_text("Friday race")
    expect(row).to_contain_text("1/2 players")
    expect(row).to_have_attribute("data-status", "waiting")
    screenshot(bob.page, "lobby")
    row.get_by_test_id("join").click()
    expect(bob.tid("room")).to_have_attribute("data-room-id", room_id)
    for user in (alice, bob):
        expect(user.page.locator("[data-testid=seat]")).to_have_count(2)
        expect(seat(user, "alice")).to_have_attribute("data-host", "true")

    say(alice, "Hi Bob! Ready to race?")
    expect(last_chat(bob, "alice")).to_have_text("Hi Bob! Ready to race?")
    say(bob, "Always. Good luck!")
    expect(last_chat(alice, "bob")).to_have_text("Always. Good luck!")

    # Typed dice seeds (the field starts with a random one) make the game the seeded one of DICE_SEED.
    alice.tid("client-seed").fill("alice-seed")
    alice.tid("ready").click()
    expect(seat(bob, "alice")).to_have_attribute("data-ready", "true")
    expect(alice.tid("ready")).to_have_attribute("aria-pressed", "true")
    screenshot(alice.page, "room-waiting")
    bob.tid("client-seed").fill("bob-seed")
    bob.tid("ready").click()
    for user in (alice, bob):
        expect(user.tid("room")).to_have_attribute("data-status", "playing")
    expect(seat(alice, "alice")).to_have_attribute("data-turn", "true")  # the creator sits first and rolls first

    players = {"alice": alice, "bob": bob}
    rolls = 0
    observer = alice
    left_checked = reloaded = False
    while (turn := whose_turn(observer)) is not None:
        if rolls == 2 and not left_checked:
            # Leaving a game you play in asks first; dismissing keeps you seated in the game.
            alice.page.once("dialog", lambda dialog: dialog.dismiss())
            with alice.page.expect_event("dialog") as asked:
                alice.tid("nav-lobby").click()
            assert "forfeit" in asked.value.message
            expect(body(alice)).to_have_attribute("data-view", "room")
            expect(alice.page).to_have_url(re.compile(f"#/room/{room_id}$"))
            expect(seat(bob, "alice")).to_have_attribute("data-connected", "true")
            left_checked = True
        if rolls == 4 and not reloaded:
            screenshot(alice.page, "game-in-progress")
            bob.page.reload()
            expect(body(bob)).to_have_attribute("data-view", "room")
            expect(bob.tid("room")).to_have_attribute("data-room-id", room_id)
            expect(bob.tid("room")).to_have_attribute("data-status", "playing")
            expect(seat(bob, "bob")).to_have_attribute("data-connected", "true")
            expect(seat(alice, "bob")).to_have_attribute("data-connected", "true")
            for name in players:
                where = seat(alice, name).get_attribute("data-position")
                expect(seat(bob, name)).to_have_attribute("data-position", where)
                token = bob.page.locator(f'[data-testid=token][data-username="{name}"]')
                expect(token).to_have_attribute("data-position", where)
            # The chat came back with the room.
            expect(last_chat(bob, "alice")).to_have_text("Hi Bob! Ready to race?")
            reloaded = True
            observer = alice
            continue
        observer = players[turn]
        roll(observer)
        rolls += 1
        assert rolls < 200, "the game does not end"
    assert reloaded and left_checked, f"the game ended after only {rolls} rolls"

    for user in (alice, bob):
        expect(user.tid("room")).to_have_attribute("data-status", "finished")
        expect(user.tid("game-over")).to_be_visible()
        expect(user.page.locator("[data-testid=standing]")).to_have_count(2)
    winner = alice.page.locator('[data-testid=standing][data-place="1"]').get_attribute("data-username")
    loser = "bob" if winner == "alice" else "alice"
    expect(players[winner].tid("winner")).to_have_text("You won!")
    expect(players[loser].tid("winner")).to_have_text(f"{winner} wins!")
    expect(seat(alice, winner)).to_have_attribute("data-position", "100")
    expect(players[winner].tid("play-again")).to_be_visible()
    # Each page checked the dice: alice from the rolls she saw, bob (who reloaded mid-game) from the stored record.
    for user in (alice, bob):
        expect(user.tid("fairness")).to_have_attribute("data-verdict", "verified")
        expect(user.tid("fairness")).to_contain_text("Verified fair")
    screenshot(alice.page, "game-over")

    # The results land in the store after game.over; the header asks `me` again until they show.
    expect(players[winner].tid("current-user")).to_contain_text("1 win · 1 game")
    expect(players[loser].tid("current-user")).to_contain_text("0 wins · 1 game")

    alice.tid("nav-leaderboard").click()
    expect(body(alice)).to_have_attribute("data-view", "leaderboard")
    rows = alice.page.locator("[data-testid=leaderboard-row]")
    expect(rows.first).to_have_attribute("data-username", winner)
    for name, wins in ((winner, 1), (loser, 0)):
        cells = alice.page.locator(f'[data-testid=leaderboard-row][data-username="{name}"] td')
        expect(cells).to_have_text([re.compile(r"\d+"), str(wins), "1"])
    screenshot(alice.page, "leaderboard")

    alice.tid("my-games").click()
    expect(body(alice)).to_have_attribute("data-view", "games")
    game_rows = alice.page.locator("[data-testid=game-row]")
    expect(game_rows).to_have_count(1)
    expect(game_rows).to_contain_text("Won" if winner == "alice" else "Place 2 of 2")
    game_rows.get_by_test_id("replay-link").click()
    expect(body(alice)).to_have_attribute("data-view", "replay")
    step = alice.tid("replay-step")
    expect(step).to_have_attribute("data-total", str(rolls))
    alice.tid("replay-last").click()
    expect(step).to_have_attribute("data-step", str(rolls))
    expect(alice.tid("replay-winner")).to_have_text(f"{winner} won.")
    expect(alice.tid("fairness")).to_have_attribute("data-verdict", "verified")
    expect(alice.page.locator(f'[data-testid=token][data-username="{winner}"]')).to_have_attribute(
        "data-position", "100")
    screenshot(alice.page, "replay")

    for user in (alice, bob):
        assert not user.console.expected_4xx, user.console.expected_4xx
        user.console.assert_clean()


def test_html_in_chat_and_room_names_shows_as_text(users: Callable[..., User]) -> None:
    """A room name and a chat line that are HTML (an <img onerror> payload) show as literal text to everyone: no
    element is created from them, no script runs, and no console error appears."""
    carol, dave = users("carol"), users("dave")
    dialogs: list[str] = []
    for user in (carol, dave):
        user.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        sign_up_over_http(user)
    wait_watching(dave)

    room_id = create_room(carol, XSS)
    expect(carol.page.locator("#room-name")).to_have_text(XSS)
    row = dave.page.locator(f'[data-testid=room-row][data-room-id="{room_id}"]')
    expect(row.locator(".room-name")).to_have_text(XSS)
    row.get_by_test_id("join").click()
    expect(dave.page.locator("#room-name")).to_have_text(XSS)

    say(carol, XSS)
    for user in (carol, dave):
        expect(last_chat(user, "carol")).to_have_text(XSS)
        assert user.page.evaluate("document.querySelectorAll('img:not([src=\"/favicon.svg\"])').length") == 0
        assert user.page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert dialogs == []
    for user in (carol, dave):
        user.console.assert_clean()


def test_content_security_policy_is_sent_and_the_client_needs_no_inline_script(users: Callable[..., User]) -> None:
    """Every page response carries a strict CSP without 'unsafe-inline' scripts; the client signs up, runs the
    lobby, a room and the leaderboard without a single CSP report; and the policy is really enforced: an inline
    script put into the page does not run and is reported."""
    erin = users("erin")
    response = erin.open()
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
    assert "default-src 'self'" in csp
    asset = erin.context.request.get("/app.js")
    assert "script-src 'self'" in asset.headers.get("content-security-policy", "")

    sign_up_in_browser(erin)
    wait_watching(erin)
    create_room(erin, "Erin's room")
    erin.tid("nav-leaderboard").click()
    expect(body(erin)).to_have_attribute("data-view", "leaderboard")
    expect(erin.tid("leaderboard").or_(erin.page.get_by_text("No games played yet."))).to_be_visible()
    erin.console.assert_clean()

    with erin.page.expect_console_message(lambda m: "Content Security Policy" in m.text) as report:
        violated = erin.page.evaluate("""() => new Promise((resolve) => {
          document.addEventListener('securitypolicyviolation', (e) => resolve(e.effectiveDirective), {once: true});
          const script = document.createElement('script');
          script.textContent = 'window.inlineScriptRan = true';
          document.body.appendChild(script);
        })""")
    assert violated.startswith("script-src")
    assert erin.page.evaluate("window.inlineScriptRan === undefined")
    assert "inline script" in report.value.text or "script-src" in report.value.text


def test_keyboard_only_login(users: Callable[..., User], service: Service) -> None:
    """Someone using only the keyboard reaches the login form with Tab (within a few stops), types, moves to the
    password with Tab and logs in with Enter."""
    service.signup("frank")
    frank = users("frank")
    frank.open()
    expect(frank.page.locator("#login-form")).to_be_visible()
    stops = []
    for _ in range(10):
        frank.page.keyboard.press("Tab")
        stops.append(frank.page.evaluate("document.activeElement.id || document.activeElement.className"))
        if stops[-1] == "login-username":
            break
    assert stops[-1] == "login-username", f"Tab stops: {stops}"
    frank.page.keyboard.type("frank")
    frank.page.keyboard.press("Tab")
    assert frank.page.evaluate("document.activeElement.id") == "login-password"
    frank.page.keyboard.type(PASSWORD)
    frank.page.keyboard.press("Enter")
    expect(body(frank)).to_have_attribute("data-view", "lobby")
    expect(frank.tid("current-user")).to_have_attribute("data-username", "frank")
    frank.console.assert_clean()


def test_logout_passes_the_cross_site_check_and_ends_the_session(users: Callable[..., User], service: Service) -> None:
    """Logging out from the page is accepted by the server (no 403 from the cross-site POST check): after a reload
    the session cookie is gone and the login form shows."""
    service.signup("gwen")
    gwen = users("gwen")
    gwen.open()
    gwen.page.locator("#login-username").fill("gwen")
    gwen.page.locator("#login-password").fill(PASSWORD)
    gwen.page.locator("#login-password").press("Enter")
    expect(body(gwen)).to_have_attribute("data-view", "lobby")
    with gwen.page.expect_response("**/api/logout") as logout:
        gwen.tid("logout").click()
    assert logout.value.status == 200
    gwen.open()
    expect(gwen.page.locator("#login-form")).to_be_visible()
    assert not [c for c in gwen.context.cookies() if c["name"] == "gamesvc_session" and c["value"]]
    gwen.console.assert_clean()


def test_phone_width_has_no_horizontal_scroll(
    users: Callable[..., User], screenshot: Callable[..., Any]
) -> None:
    """At a 375 px wide phone viewport the login page, the lobby and a room with a game running fit the width:
    the document never scrolls sideways (scrollWidth <= 375). A second player joins by typing the room code."""
    phone = {"width": 375, "height": 740}
    grace, henry = users("grace", viewport=phone), users("henry")
    grace.open()
    expect(grace.page.locator("#signup-form")).to_be_visible()
    assert scroll_width(grace) <= 375
    sign_up_in_browser(grace)
    wait_watching(grace)
    assert scroll_width(grace) <= 375
    screenshot(grace.page, "phone-lobby", docs=False)

    room_id = create_room(grace, "Pocket race with a rather long name")
    assert scroll_width(grace) <= 375
    sign_up_over_http(henry)
    henry.page.locator("#join-code [name=code]").fill(room_id.lower())
    henry.tid("join-code-submit").click()
    expect(henry.tid("room")).to_have_attribute("data-room-id", room_id)
    say(henry, "Joining from a desktop, writing a long line to see that chat wraps on a small phone screen.")
    expect(last_chat(grace, "henry")).to_contain_text("small phone screen")
    start_game(grace, henry)
    roll(grace)  # the creator rolls first
    expect(grace.tid("die")).not_to_have_attribute("data-value", "")
    expect(grace.page.locator("[data-testid=move]").first).to_contain_text("rolled")
    assert scroll_width(grace) <= 375
    screenshot(grace.page, "phone-room")
    for user in (grace, henry):
        user.console.assert_clean()


def test_logout_in_one_tab_signs_the_other_tabs_out(users: Callable[..., User]) -> None:
    """Two tabs of one browser share the session; logging out in one sends the other (session.ended) to the login
    page with a notice, instead of leaving it looking signed in with a dead session."""
    gina = users("gina")
    gina.open()
    sign_up_in_browser(gina)
    other = gina.context.new_page()
    other.goto("/#/lobby")
    expect(other.locator("body")).to_have_attribute("data-view", "lobby")
    expect(other.get_by_test_id("conn-status")).to_have_attribute("data-state", "open")
    gina.tid("logout").click()
    expect(body(gina)).to_have_attribute("data-view", "auth")
    expect(other.locator("body")).to_have_attribute("data-view", "auth")
    expect(other.get_by_test_id("auth-notice")).to_contain_text("logged out")
    gina.console.assert_clean()
