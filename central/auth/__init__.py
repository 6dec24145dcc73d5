"""Central's security state: signing keys, token issuing and verification, revocations, bans.

`Security` (central/auth/runtime.py) is created at start from the configuration and the data
directory, loaded from the store, and used by the RPC interceptor (authentication) and by logic
(issuing pilot, job and user tokens; revocations and bans).
"""

from central.auth.bans import Bans
from central.auth.revocations import RevocationKind, Revocations
from central.auth.runtime import Security

__all__ = ["Bans", "RevocationKind", "Revocations", "Security"]
