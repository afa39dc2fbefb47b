"""The `twistd gamesvc` plugin."""

from twisted.application.service import ServiceMaker

gamesvc = ServiceMaker("gamesvc", "gamesvc.tap", "Real-time multiplayer Dice Race: web client, JSON API and WebSocket", "gamesvc")
