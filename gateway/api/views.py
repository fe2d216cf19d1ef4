"""JSON shapes of cases for the terminal (the merged state, as `sync.model.fold` gives it)."""

from __future__ import annotations

from typing import Any

from sync.model import CaseState
from sync.store import CaseSummary
from sync.workflow import Side

#: Applicant keys kept out of API answers: the raw card photo (WLT, vendor-decoded only)
#: travels to the county inside the case but no terminal can show it.
HIDDEN_APPLICANT_KEYS = frozenset({"photo_wlt"})


def case_view(state: CaseState) -> dict[str, Any]:
    hub_changes = [c for c in state.status_history if c.side is Side.HUB]
    applicant = {k: v for k, v in state.applicant.items() if k not in HIDDEN_APPLICANT_KEYS}
    return {
        "case": state.case,
        "service": state.service,
        "status": state.status.value,
        "hub_status": hub_changes[-1].to_status.value if hub_changes else None,
        "applicant": applicant,
        "fields": dict(state.fields),
        "materials": [
            {"sha256": m.sha256, "kind": m.kind, "pages": m.pages, "size": m.size,
             "mime": m.mime, "answers": m.answers, "superseded_by": m.superseded_by,
             "current": m.superseded_by is None}
            for m in state.materials
        ],
        "supplements": [
            {"request": r.id, "what": r.what, "answered_by": list(r.answered_by),
             "open": not r.answered}
            for r in state.supplements
        ],
        "open_requests": len(state.open_requests),
        "conflicts": [{"event": c.event_id, "reason": c.reason} for c in state.conflicts],
        "history": [
            {"from": c.from_status.value, "to": c.to_status.value, "side": c.side.value,
             "origin": c.origin, "reason": c.reason, "event": c.event_id}
            for c in state.status_history
        ],
        "notes": [{"side": n.side.value, "text": n.text, "event": n.event_id}
                  for n in state.notes],
        "events": state.event_count,
    }


def summary_view(summary: CaseSummary) -> dict[str, Any]:
    return {"case": summary.case, "status": summary.status, "service": summary.service,
            "materials": summary.materials, "conflicts": summary.conflicts}
