"""Agent tokens: ``Authorization: Bearer agt_...``. An agent is a principal of one team, not a user."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from launch.services import AGENT_TOKEN_PREFIX, agent_authenticate


class AgentPrincipal:
    """What ``request.user`` is for an agent: authenticated, but no user, member or superuser."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    is_agent = True
    pk = None

    def __init__(self, agent) -> None:
        self.agent = agent

    def get_username(self) -> str:
        return f"agent:{self.agent.name}"

    def __str__(self) -> str:
        return self.get_username()


class AgentTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() not in (b"bearer", b"token"):
            return None
        raw = header[1].decode(errors="replace")
        if not raw.startswith(AGENT_TOKEN_PREFIX):
            return None  # a user's API token
        agent = agent_authenticate(raw=raw)
        if agent is None:
            raise exceptions.AuthenticationFailed("Invalid or disabled agent token.")
        return AgentPrincipal(agent), agent

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="agents"'


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = "launch.api.authentication.AgentTokenAuthentication"
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An agent token (agt_...)"}
