"""Pydantic models of the events closedloop receives, one module per source service; their
envelope mirrors Powertools' parser models field for field (`base.EventBridgeModel`).

Each model accepts what AWS really sends (see `events/` at the repository root) and rejects
look-alikes: other detail-types, other sources, the alarm-action payload.
"""
