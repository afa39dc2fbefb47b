"""gamesvc's benchmark: a load generator of real WebSocket players and the scenarios that drive it."""
