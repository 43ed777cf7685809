"""AION policy engine: the pure core.

Bundles in, decisions out. Nothing here imports a web framework, a database
driver or a queue, nor reads the clock, the environment or the network on
its own: time, data, keys and trust roots are passed in.
"""

from engine.actions import ACTIONS, check_action
from engine.bundle import Bundle, VerificationKey, load_bundle, sign_files, verify_files
from engine.decide import (
    DEFAULT_TIME_LIMIT_US,
    apply_approval_obligations,
    apply_bundle_modes,
    combine,
    decide,
    decide_async,
)
from engine.errors import (
    BundleError,
    BundleRootConflict,
    BundleTooLarge,
    EngineError,
    InvalidInput,
    PolicyError,
    PolicyProblem,
    RollbackError,
    SignatureError,
)
from engine.model import (
    Decision,
    DecisionRequest,
    EngineResult,
    EvalError,
    Mode,
    Outcome,
    Principal,
    Reason,
    Resource,
)
from engine.opa_querier import InMemoryOpa, OpaAnswer, OpaQuerier
from engine.opa_remote import RemoteRego
from engine.policyset import Evaluator, PolicySet, PolicySetCache, compile_bundles
from engine.rego import RegoOptions
from engine.verdict import EngineVerdict

__all__ = [
    "ACTIONS",
    "DEFAULT_TIME_LIMIT_US",
    "Bundle",
    "BundleError",
    "BundleRootConflict",
    "BundleTooLarge",
    "Decision",
    "DecisionRequest",
    "EngineError",
    "EngineResult",
    "EngineVerdict",
    "EvalError",
    "Evaluator",
    "InMemoryOpa",
    "InvalidInput",
    "Mode",
    "OpaAnswer",
    "OpaQuerier",
    "Outcome",
    "PolicyError",
    "PolicyProblem",
    "PolicySet",
    "PolicySetCache",
    "Principal",
    "Reason",
    "RegoOptions",
    "RemoteRego",
    "Resource",
    "RollbackError",
    "SignatureError",
    "VerificationKey",
    "apply_approval_obligations",
    "apply_bundle_modes",
    "check_action",
    "combine",
    "compile_bundles",
    "decide",
    "decide_async",
    "load_bundle",
    "sign_files",
    "verify_files",
]
