"""The cluster: many gamesvc nodes serving one game world over one MongoDB and Redis pub/sub (docs/cluster.md).

`leases` gives each room one owner node (a lease in the room's document, fenced by its epoch) and takes the rooms
of dead nodes over; `node` runs it on a node's clock; `lobby` shares the lobby's room summaries between nodes.
"""
