"""Returns traffic splits for a canary, a promotion and a rollback (platform-neutral).

A split is a list of `Target(revision, percent, tag)`; percents sum to 100, a tag gives a
revision its own URL (`https://<tag>---<service>...`) whatever its share. Cloud Run
(`deploy.py`) and Knative (`knative.py`) both translate these lists.

The rules:
- canary(p): the new revision gets the canary tag and p%; the revision that served most of the
  rest (the stable one) gets 100-p%; the old canary loses its tag; other tags are kept at 0%.
- promote: the canary gets 100%; the revision that was stable keeps a `previous` tag at 0%,
  which is what `rollback` returns to.
- rollback: during a canary, the stable revision gets 100% back; after a promotion, the
  revision tagged `previous` does. The rolled-back revision keeps its tag at 0%, so it can
  still be inspected at its URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfx_serving_ext.cloud_run.errors import DeployError

PREVIOUS_TAG = "previous"


@dataclass(frozen=True)
class Target:
    """One traffic entry: a revision, its share, and its tag ("" = none)."""

    revision: str
    percent: int
    tag: str = ""


def _stable(targets: list[Target], excluding: str, canary_tag: str) -> str | None:
    """Returns the revision with most traffic other than `excluding`, untagged-canary first."""
    totals: dict[str, int] = {}
    canaries = {t.revision for t in targets if t.tag == canary_tag}
    for t in targets:
        if t.revision != excluding and t.percent > 0:
            totals[t.revision] = totals.get(t.revision, 0) + t.percent
    if not totals:
        return None
    return max(totals, key=lambda r: (r not in canaries, totals[r], r))


def _kept_tags(targets: list[Target], drop_tags: set[str], drop_revisions: set[str]):
    return [
        Target(t.revision, 0, t.tag)
        for t in targets
        if t.tag and t.tag not in drop_tags and t.revision not in drop_revisions
    ]


def canary_split(current: list[Target], new_revision: str, tag: str, percent: int) -> list[Target]:
    """Returns the split that gives `new_revision` the tag and `percent` % of traffic."""
    if percent == 100:  # all traffic at once: a canary promoted immediately
        return promote_split(canary_split(current, new_revision, tag, 0), tag)
    stable = _stable(current, new_revision, tag)
    if stable is None:  # first revision of the service: nothing else can take traffic
        return [Target(new_revision, 100, tag)]
    stable_tag = next(
        (t.tag for t in current if t.revision == stable and t.tag and t.tag != tag), ""
    )
    split = [Target(new_revision, percent, tag), Target(stable, 100 - percent, stable_tag)]
    drop_tags = {tag, stable_tag} if stable_tag else {tag}
    return split + _kept_tags(current, drop_tags, {new_revision, stable})


def promote_split(current: list[Target], tag: str, revision: str | None = None) -> list[Target]:
    """Returns the split that gives the tagged (or the named) revision 100% of traffic.

    Raises:
        DeployError: no revision carries the tag.
    """
    if revision is None:
        revision = next((t.revision for t in current if t.tag == tag), None)
        if revision is None:
            raise DeployError(
                f"No revision is tagged '{tag}', so there is nothing to promote; deploy a "
                "canary first or name the revision to promote."
            )
    previous = _stable(current, revision, tag)
    revision_tag = next((t.tag for t in current if t.revision == revision and t.tag), tag)
    split = [Target(revision, 100, revision_tag)]
    if previous:
        split.append(Target(previous, 0, PREVIOUS_TAG))
    drop_revisions = {revision} | ({previous} if previous else set())
    return split + _kept_tags(current, {PREVIOUS_TAG, revision_tag}, drop_revisions)


def rollback_split(current: list[Target], canary_tag: str) -> list[Target]:
    """Returns the split that sends all traffic back to the previous revision.

    Raises:
        DeployError: the canary takes no traffic and was not promoted (nothing to undo), or
            a promoted canary has no revision tagged `previous` to return to.
    """
    canary = next((t.revision for t in current if t.tag == canary_tag), None)
    serving = {t.revision for t in current if t.percent > 0}
    if canary in serving and len(serving) > 1:  # a canary split: the stable revision takes all
        restore = _stable(current, canary, canary_tag)
    elif canary in serving:  # the canary was promoted: back to the revision it replaced
        restore = next((t.revision for t in current if t.tag == PREVIOUS_TAG), None)
        if restore is None:
            raise DeployError(
                f"Revision {canary} serves all traffic and no revision is tagged "
                f"'{PREVIOUS_TAG}' (promote sets it): there is no previous revision to return "
                "to. Deploy the revision you want instead."
            )
    else:
        raise DeployError(
            f"The revision tagged '{canary_tag}' ({canary or 'none'}) takes no traffic, so "
            "there is nothing to roll back."
        )
    restore_tag = next(
        (
            t.tag
            for t in current
            if t.revision == restore and t.tag and t.tag not in (PREVIOUS_TAG, canary_tag)
        ),
        "",
    )
    split = [Target(restore, 100, restore_tag)]
    return split + _kept_tags(current, {PREVIOUS_TAG, restore_tag}, {restore})
