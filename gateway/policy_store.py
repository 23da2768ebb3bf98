"""The live stand-in policy in etcd, under dual control: propose, approve (by another operator), roll back.

    <root>/standin/policy                    the live version (PolicyRecord JSON); gateways watch it
    <root>-policy/proposals/<proposer>/<id>  a proposal (Proposal JSON); etcd lets only <proposer>
                                             write there, so the proposer in the key is authenticated
    <root>-policy/history/<version>          every approved version (PolicyRecord JSON)

Versions count up from 1 (0 is the gateways' file). An approval writes the new live value,
its history entry and the approver's audit record (authgw.audit; details name both
operators) in one etcd transaction that also requires the live key unchanged since it was
read and the version not yet in the history: two approvals racing cannot both win. The
approver must not be the proposer (certificate CN against the proposal's key), the proposal
must have been made against the live version (else its diff was reviewed against something
else: propose again), and it is validated again. A rollback is a proposal of an approved
version's text, approved like any other. Every write needs a certificate identity: over
plaintext etcd nobody is authenticated, so there is no dual control to speak of.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from gateway.policy_record import PolicyRecord, PolicyStoreError, Proposal, digest, parse_json, parse_record
from health.admin import audited_transaction
from health.etcd import EtcdClient, KeyValue, TxnPut
from health.keys import KeyLayout
from standin.policy_live import policy_from_text

__all__ = ["PolicyRecord", "PolicyStore", "PolicyStoreError", "Proposal", "digest", "parse_record"]


class PolicyStore:
    """The operator side: every method is one command's etcd work."""

    def __init__(self, client: EtcdClient, layout: KeyLayout) -> None:
        self._client = client
        self._layout = layout
        self.key = layout.standin_policy()

    def _operator(self) -> str:
        if self._client.user is None:
            raise PolicyStoreError(
                "policy changes need the operator's etcd client certificate (its CN is who proposes or"
                " approves): give --etcd-cert/--etcd-key/--etcd-ca; over plaintext nobody is authenticated"
            )
        return self._client.user

    async def live(self) -> tuple[PolicyRecord | None, int]:
        """The live version (None: gateways use their file) and the key's mod_revision (0: absent)."""
        kv = await self._client.get(self.key)
        if kv is None:
            return None, 0
        return parse_record(kv.value, self.key), kv.mod_revision

    async def propose(self, text: str, *, rollback_of: int | None = None) -> Proposal:
        """Validate `text` and store it as this operator's proposal (audited)."""
        operator = self._operator()
        live, _ = await self.live()
        at = datetime.now(UTC)
        proposal_id = f"{at.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
        key = self._layout.policy_proposal(operator, proposal_id)
        policy_from_text(text, key)
        base = live.version if live else 0
        proposal = Proposal(proposal_id, text, digest(text), operator, at.isoformat(), base, rollback_of)
        details = {"proposal": proposal_id, "sha256": proposal.sha256, "base_version": base}
        if rollback_of is not None:
            details["rollback_of"] = rollback_of
        await audited_transaction(
            self._client,
            self._layout,
            "standin.policy.propose",
            target=key,
            ops=[TxnPut(key, proposal.to_json())],
            details={**details, "proposed_by": operator},
        )
        return proposal

    async def proposals(self) -> list[Proposal]:
        """Every proposal stored, oldest first (approved ones included: see history)."""
        result = await self._client.get_prefix(self._layout.policy_proposals_prefix)
        found = [self._proposal(kv) for kv in result.kvs]
        return sorted(found, key=lambda p: p.proposal_id)

    def _proposal(self, kv: KeyValue) -> Proposal:
        proposer = kv.key[len(self._layout.policy_proposals_prefix) :].split("/")[0]
        try:
            proposal = Proposal(**parse_json(kv.value, kv.key))
        except TypeError as exc:
            raise PolicyStoreError(f"{kv.key}: not a proposal ({exc})") from exc
        if proposal.proposed_by != proposer:  # the key is what etcd authenticated
            raise PolicyStoreError(
                f"{kv.key}: claims proposer {proposal.proposed_by!r}, stored by {proposer!r}"
            )
        return proposal

    async def history(self) -> list[PolicyRecord]:
        result = await self._client.get_prefix(self._layout.policy_history_prefix)
        return sorted((parse_record(kv.value, kv.key) for kv in result.kvs), key=lambda r: r.version)

    async def unrecorded(self, live: PolicyRecord) -> str:
        """Why the live value is not the approved version it claims ("" when it is)."""
        kv = await self._client.get(self._layout.policy_version(live.version))
        if kv is None or parse_record(kv.value, kv.key) != live:
            return (
                f"live version {live.version} is not the approved version {live.version} of the history:"
                " it was written around `authgw standin policy approve` (no dual control, no audit record)"
            )
        return ""

    async def version(self, version: int) -> PolicyRecord:
        kv = await self._client.get(self._layout.policy_version(version))
        if kv is None:
            raise PolicyStoreError(f"no approved version {version}: see `authgw standin policy history`")
        return parse_record(kv.value, kv.key)

    async def rollback(self, version: int) -> Proposal:
        """Propose the text of approved `version` again (a second operator approves it)."""
        return await self.propose((await self.version(version)).policy, rollback_of=version)

    async def approve(self, proposal_id: str) -> PolicyRecord:
        """Make `proposal_id` the live version, if this operator did not propose it (see the docstring)."""
        approver = self._operator()
        proposal = await self._find(proposal_id)
        if proposal.proposed_by == approver:
            raise PolicyStoreError(
                f"proposal {proposal_id} was proposed by {approver}: dual control needs another operator"
                " to approve it"
            )
        history = await self.history()
        done = [r for r in history if r.proposal == proposal_id]
        if done:
            raise PolicyStoreError(f"proposal {proposal_id} is already approved as version {done[0].version}")
        live, revision = await self.live()
        current = live.version if live else 0
        if proposal.base_version != current:
            raise PolicyStoreError(
                f"proposal {proposal_id} was made against version {proposal.base_version}, the live version"
                f" is {current}: review `policy diff` and propose again"
            )
        source = self._layout.policy_proposal(proposal.proposed_by, proposal_id)
        policy_from_text(proposal.policy, source)
        # after a live key deleted (gateways back on their file), versions still never repeat
        version = max([current, *(r.version for r in history)]) + 1
        record = PolicyRecord(
            version, proposal.policy, digest(proposal.policy), proposal_id, proposal.proposed_by,
            approver, datetime.now(UTC).isoformat(), proposal.rollback_of,
        )  # fmt: skip
        await self._publish(record, revision)
        return record

    async def _publish(self, record: PolicyRecord, revision: int) -> None:
        history = self._layout.policy_version(record.version)
        details = {
            "version": record.version, "proposal": record.proposal, "sha256": record.sha256,
            "proposed_by": record.proposed_by, "approved_by": record.approved_by,
        }  # fmt: skip
        if record.rollback_of is not None:
            details["rollback_of"] = record.rollback_of
        result = await audited_transaction(
            self._client,
            self._layout,
            "standin.policy.approve",
            target=self.key,
            ops=[TxnPut(self.key, record.to_json()), TxnPut(history, record.to_json())],
            details=details,
            absent=[history],
            unchanged={self.key: revision},
        )
        if not result.applied:
            raise PolicyStoreError(
                f"the live policy changed while approving (another approval?): nothing written; run"
                f" `authgw standin policy show` and approve again if {record.proposal} still applies"
            )

    async def _find(self, proposal_id: str) -> Proposal:
        for proposal in await self.proposals():
            if proposal.proposal_id == proposal_id:
                return proposal
        raise PolicyStoreError(f"no proposal {proposal_id!r}: see `authgw standin policy show`")
