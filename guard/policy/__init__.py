"""Policy: YAML rules over findings → one explainable verdict.

    policy = load_policy("policies/")             # PolicyError names file:line:col
    verdict = evaluate(policy, findings, sender=..., rcpt_tos=[...])
    verdict.action, verdict.reasons, verdict.to_json()

`PolicyWatcher` reloads on change and keeps the last good policy; `default_policy()`
passes everything (used when no policy is configured).

The path of a policy through the modules: loader (yamltree reads each file with
positions, schema and values validate, checks look at the whole document, explain and
issues word the errors) -> compiled (rules, conditions, evidence, patterns) -> engine
(evaluate; parameters of the winning rule) -> verdict. datafiles (with csvread) reads
the CSV files a policy names. The policy knows no SMTP, SQL or web: it imports only
inspect (the findings) and mail (address forms).
"""

from guard.policy.compiled import Policy, compile_policy, default_policy
from guard.policy.datafiles import load_customers, load_partners
from guard.policy.engine import evaluate
from guard.policy.issues import PolicyError, PolicyIssue
from guard.policy.loader import load_policy
from guard.policy.reload import PolicyWatcher
from guard.policy.rules import CompiledRule
from guard.policy.schema import Action, PolicyDoc
from guard.policy.verdict import Modifiers, Reason, TagMark, Verdict

__all__ = [
    "Action",
    "CompiledRule",
    "Modifiers",
    "Policy",
    "PolicyDoc",
    "PolicyError",
    "PolicyIssue",
    "PolicyWatcher",
    "Reason",
    "TagMark",
    "Verdict",
    "compile_policy",
    "default_policy",
    "evaluate",
    "load_customers",
    "load_partners",
    "load_policy",
]
