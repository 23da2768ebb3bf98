"""Stand-in processing: decide card authorizations when every issuer pool has failed.

The gateway builds one engine and calls it when no issuer can answer::

    config = load_config(Path("config/standin.toml"))     # secrets from AUTHGW_TOKEN_KEY / AUTHGW_PAN_KEY
    async with StandIn.from_config(config) as standin:
        decision = await standin.decide(request, Reason.ALL_POOLS_FAILED, trace_context=traceparent)

Independent of gRPC and of the gateway: it works on its own small domain types
(StandInRequest, StandInDecision), converted at the gateway's edge.

Settlement replays the journal to the issuer once it is back, through an AdviceSender the
gateway injects (IssuerHost/Advise over its members' channels)::

    worker = Settlement.from_config(config, SettlementSettings(), sender=sender, issuer_healthy=healthy)
    async with worker:
        ...
"""

from authgw.codes import ResponseCode
from standin.crypto import PanCipher, PanKeyring
from standin.engine import EngineStatus, StandIn
from standin.entry import JournalEntry, decode_decision, decode_entry, decrypt_pan, encode_entry
from standin.errors import (
    CardStatusFileError,
    ClosedError,
    ConfigError,
    EntryFormatError,
    InvalidRequestError,
    LocalJournalError,
    PolicyError,
    StandInError,
    StoreUnavailableError,
    UnknownPanKeyError,
)
from standin.exposure import BudgetExposure
from standin.policy import (
    ChannelRisk,
    ExposureBudget,
    RiskTier,
    StandInPolicy,
    Velocity,
    VelocityLimit,
    WindowLimit,
)
from standin.policy_load import load_policy
from standin.redis_io import make_redis_client
from standin.settings import JournalSettings, LocalSettings, RedisSettings, StandInConfig, load_config
from standin.settlement import Advice, AdviceSender, SendOutcome, SendResult, Settlement, WorkerState
from standin.settlement.settings import SettlementSettings, load_settlement_settings
from standin.tokens import CardTokenizer
from standin.types import (
    CardStatus,
    Channel,
    Check,
    CheckResult,
    JournalKind,
    LimitKind,
    Reason,
    StandInDecision,
    StandInRequest,
)

__all__ = [
    "Advice",
    "AdviceSender",
    "BudgetExposure",
    "CardStatus",
    "CardStatusFileError",
    "CardTokenizer",
    "Channel",
    "ChannelRisk",
    "Check",
    "CheckResult",
    "ClosedError",
    "ConfigError",
    "EngineStatus",
    "EntryFormatError",
    "ExposureBudget",
    "InvalidRequestError",
    "JournalEntry",
    "JournalKind",
    "JournalSettings",
    "LimitKind",
    "LocalJournalError",
    "LocalSettings",
    "PanCipher",
    "PanKeyring",
    "PolicyError",
    "Reason",
    "RedisSettings",
    "ResponseCode",
    "RiskTier",
    "SendOutcome",
    "SendResult",
    "Settlement",
    "SettlementSettings",
    "StandIn",
    "StandInConfig",
    "StandInDecision",
    "StandInError",
    "StandInPolicy",
    "StandInRequest",
    "StoreUnavailableError",
    "UnknownPanKeyError",
    "Velocity",
    "VelocityLimit",
    "WindowLimit",
    "WorkerState",
    "decode_decision",
    "decode_entry",
    "decrypt_pan",
    "encode_entry",
    "load_config",
    "load_policy",
    "load_settlement_settings",
    "make_redis_client",
]
