"""A local Discord (REST v10 + gateway) that the real discord.py client talks to in tests.

    standin = DiscordStandin(); await standin.start()
    discord.http.Route.BASE = standin.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(standin.gateway_url)
"""

from .interactions import InteractionFailed, StandinInteraction
from .server import DiscordStandin, format_events
from .state import ApiError, Channel, ChannelType, Guild, Intent, Member, OptionType, Perm, Role, StandinError, User

__all__ = [
    "ApiError",
    "Channel",
    "ChannelType",
    "DiscordStandin",
    "Guild",
    "Intent",
    "InteractionFailed",
    "Member",
    "OptionType",
    "Perm",
    "Role",
    "StandinError",
    "StandinInteraction",
    "User",
    "format_events",
]
