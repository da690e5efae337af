"""`model apply`: the real contentful-management SDK against a loopback fake of the CMA."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tenacity import RetryCallState, wait_none
from tenacity.wait import wait_base

from integration.client import WaitForServerHint
from integration.config import ContentfulSettings
from integration.content_model import service
from integration.content_model.client import ManagementClient
from integration.content_model.definition import MODEL_TYPES, ModelType, load_model
from integration.content_model.exceptions import ManagementNotConfigured, ModelApplyRefused
from integration.exceptions import ContentfulRequestRejected, ContentfulUnavailable
from tests.fakes.contentful_management import FakeContentfulManagement

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference" / "contentful"
AUDIENCE = "mbAudience"


class RecordingWait(wait_base):
    """The policy's own wait, recorded instead of slept."""

    def __init__(self) -> None:
        self.inner = WaitForServerHint(max_wait=60)
        self.asked: list[float] = []

    def __call__(self, retry_state: RetryCallState) -> float:
        self.asked.append(self.inner(retry_state))
        return 0.0


@pytest.fixture
def fake() -> Iterator[FakeContentfulManagement]:
    with FakeContentfulManagement() as server:
        yield server


def settings_for(fake: FakeContentfulManagement, **overrides: Any) -> ContentfulSettings:
    values: dict[str, Any] = {
        "management_token": fake.token,
        "management_url": fake.url,
        "max_attempts": 4,
    }
    return ContentfulSettings(_env_file=None, **(values | overrides))


def client_for(fake: FakeContentfulManagement, **options: Any) -> ManagementClient:
    options.setdefault("wait", wait_none())
    return ManagementClient(settings_for(fake), space_id=fake.space_id, **options)


def apply_model(client: ManagementClient, model: tuple[ModelType, ...]) -> service.Plan:
    return service.apply(client, model, service.plan(client, model))


def audience(model: tuple[ModelType, ...]) -> ModelType:
    return next(t for t in model if t.id == AUDIENCE)


def with_audience(model: tuple[ModelType, ...], changed: ModelType) -> tuple[ModelType, ...]:
    return tuple(changed if t.id == AUDIENCE else t for t in model)


def seed_audience_with_extra_field(fake: FakeContentfulManagement) -> None:
    """The space's mbAudience has every model field plus `legacyScore`, active."""
    body = copy.deepcopy(dict(audience(load_model()).body))
    legacy = {"id": "legacyScore", "name": "Legacy score", "type": "Number", "validations": []}
    body["fields"] = [*body["fields"], {**legacy, "localized": False, "required": False}]
    fake.add_content_type({"sys": {"id": AUDIENCE}, **body})


def help_text(fake: FakeContentfulManagement, type_id: str, field_id: str) -> str:
    editor = fake.editor_interface(type_id)
    assert editor is not None
    control = next(c for c in editor["controls"] if c["fieldId"] == field_id)
    return str(control["settings"]["helpText"])


class TestApply:
    def test_empty_space_gets_every_type_active_with_validations_and_help_texts(
        self, fake: FakeContentfulManagement
    ) -> None:
        model = load_model()
        client = client_for(fake)
        planned = service.plan(client, model)
        assert fake.writes == []
        assert "+ mbAudience: new content type (7 fields)" in planned.lines()
        assert "+ mbAudience.maxAgeSeconds: new field (Integer)" in planned.lines()

        service.apply(client, model, planned)

        for wanted in model:
            active = fake.active_content_type(wanted.id)
            assert active is not None
            assert active["sys"]["version"] == active["sys"]["publishedVersion"] + 1
            assert [f["id"] for f in active["fields"]] == [f["id"] for f in wanted.fields]
        stored = fake.content_type(AUDIENCE)
        assert stored is not None
        max_age = next(f for f in stored["fields"] if f["id"] == "maxAgeSeconds")
        assert max_age["type"] == "Integer"
        assert max_age["validations"][0]["range"] == {"min": 0}
        assert "stale audience" in help_text(fake, AUDIENCE, "maxAgeSeconds").lower()
        status = fake.editor_interface("mbExperiment")["controls"]  # type: ignore[index]
        assert next(c for c in status if c["fieldId"] == "status")["widgetId"] == "dropdown"

    def test_second_run_is_a_no_op(self, fake: FakeContentfulManagement) -> None:
        model = load_model()
        client = client_for(fake)
        apply_model(client, model)
        writes = len(fake.writes)

        again = service.plan(client, model)
        service.apply(client, model, again)

        assert again.changes == []
        assert len(fake.writes) == writes

    def test_other_content_types_are_left_alone(self, fake: FakeContentfulManagement) -> None:
        reference = json.loads((REFERENCE / "ninetailed-content-types.cma.json").read_text())
        nt_audience = next(t for t in reference["contentTypes"] if t["sys"]["id"] == "nt_audience")
        fake.add_content_type(nt_audience)
        apply_model(client_for(fake), load_model())
        assert all("nt_audience" not in w.path for w in fake.writes)
        served = fake.content_type("nt_audience")
        assert served is not None
        assert set(served["sys"]) == set(nt_audience["sys"]), "the fake serves the real sys shape"

    def test_changed_help_text_and_validation_show_in_the_diff_and_are_applied(
        self, fake: FakeContentfulManagement
    ) -> None:
        client = client_for(fake)
        apply_model(client, load_model())
        old = audience(load_model())
        fields = [
            {**f, "validations": [{"range": {"min": 0, "max": 86400}}]}
            if f["id"] == "maxAgeSeconds"
            else f
            for f in old.fields
        ]
        controls = tuple(
            {**c, "settings": {"helpText": "Older than this: stale audience."}}
            if c["fieldId"] == "maxAgeSeconds"
            else c
            for c in old.controls
        )
        changed = replace(old, body={**old.body, "fields": fields}, controls=controls)
        model = with_audience(load_model(), changed)

        planned = service.plan(client, model)
        lines = planned.lines()
        assert len(lines) == 2, lines
        assert lines[0].startswith("~ mbAudience.maxAgeSeconds validations: ")
        assert lines[0].endswith('-> [{"range": {"max": 86400, "min": 0}}]')
        assert lines[1].startswith("~ mbAudience.maxAgeSeconds help text: ")
        assert lines[1].endswith('-> "Older than this: stale audience."')

        service.apply(client, model, planned)

        active = fake.active_content_type(AUDIENCE)
        assert active is not None
        max_age = next(f for f in active["fields"] if f["id"] == "maxAgeSeconds")
        assert max_age["validations"] == [{"range": {"min": 0, "max": 86400}}]
        assert help_text(fake, AUDIENCE, "maxAgeSeconds") == "Older than this: stale audience."
        assert service.plan(client, model).changes == []

    def test_space_with_the_previous_model_gains_max_age_seconds(
        self, fake: FakeContentfulManagement
    ) -> None:
        previous = audience(load_model())
        fields = [f for f in previous.fields if f["id"] != "maxAgeSeconds"]
        fake.add_content_type({"sys": {"id": AUDIENCE}, **previous.body, "fields": fields})
        client = client_for(fake)
        lines = service.plan(client, load_model()).lines()
        assert "+ mbAudience.maxAgeSeconds: new field (Integer)" in lines
        apply_model(client, load_model())
        active = fake.active_content_type(AUDIENCE)
        assert active is not None
        assert active["fields"][-1]["id"] == "maxAgeSeconds"


class TestRemovedFields:
    def test_a_field_holding_data_is_refused_and_nothing_changes(
        self, fake: FakeContentfulManagement
    ) -> None:
        seed_audience_with_extra_field(fake)
        fake.add_entry(AUDIENCE, {"key": {"en-US": "a"}, "legacyScore": {"en-US": 3}})
        fake.add_entry(AUDIENCE, {"key": {"en-US": "b"}, "legacyScore": {"en-US": 0}})
        fake.add_entry(AUDIENCE, {"key": {"en-US": "c"}})
        client = client_for(fake)

        planned = service.plan(client, load_model())

        [refusal] = planned.refusals
        assert (refusal.type_id, refusal.field_id) == (AUDIENCE, "legacyScore")
        assert "2 entries hold a value" in refusal.line()
        assert "omit" in refusal.line()
        with pytest.raises(
            ModelApplyRefused, match=r"mbAudience\.legacyScore.*nothing was changed"
        ):
            service.apply(client, load_model(), planned)
        assert fake.writes == []

    def test_an_empty_field_is_omitted_then_deleted(self, fake: FakeContentfulManagement) -> None:
        seed_audience_with_extra_field(fake)
        fake.add_entry(AUDIENCE, {"key": {"en-US": "a"}})
        client = client_for(fake)

        planned = service.plan(client, load_model())
        assert "- mbAudience.legacyScore: no entry holds a value; omitted, then deleted" in (
            planned.lines()
        )
        service.apply(client, load_model(), planned)

        active = fake.active_content_type(AUDIENCE)
        assert active is not None
        assert "legacyScore" not in [f["id"] for f in active["fields"]]
        audience_writes = [w for w in fake.writes if w.path.endswith("/content_types/mbAudience")]
        assert len(audience_writes) == 2, "omitted first, deleted second (the fake enforces it)"


class TestRetries:
    def test_version_conflict_rereads_and_succeeds(self, fake: FakeContentfulManagement) -> None:
        seed_audience_with_extra_field(fake)
        client = client_for(fake)
        planned = service.plan(client, load_model())
        fake.edit_before_next_write(AUDIENCE)

        service.apply(client, load_model(), planned)

        statuses = [r.status for r in fake.requests if r.method == "PUT"]
        assert 409 in statuses
        conflict = next(i for i, r in enumerate(fake.requests) if r.status == 409)
        reread = fake.requests[conflict + 1]
        assert (reread.method, reread.path.rsplit("/", 1)[-1]) == ("GET", AUDIENCE)
        active = fake.active_content_type(AUDIENCE)
        assert active is not None
        assert "legacyScore" not in [f["id"] for f in active["fields"]]

    def test_rate_limit_waits_the_reset_then_succeeds(self, fake: FakeContentfulManagement) -> None:
        wait = RecordingWait()
        client = client_for(fake, wait=wait)
        fake.fail_next(429, headers={"X-Contentful-RateLimit-Reset": "7"})

        apply_model(client, load_model())

        assert wait.asked == [7.0]
        assert fake.requests[0].status == 429
        assert all(fake.active_content_type(t) for t in MODEL_TYPES)

    def test_rate_limits_are_bounded(self, fake: FakeContentfulManagement) -> None:
        client = client_for(fake)
        fake.fail_next(429, count=10, headers={"X-Contentful-RateLimit-Reset": "1"})
        with pytest.raises(ContentfulUnavailable, match="after 4 attempt"):
            service.plan(client, load_model())
        assert len(fake.requests) == 4

    def test_a_bad_token_fails_at_once(self, fake: FakeContentfulManagement) -> None:
        settings = settings_for(fake, management_token="wrong")
        client = ManagementClient(settings, space_id=fake.space_id, wait=wait_none())
        with pytest.raises(ContentfulRequestRejected, match="401 AccessTokenInvalid"):
            service.plan(client, load_model())
        assert len(fake.requests) == 1

    def test_no_token_is_a_configuration_error(self, fake: FakeContentfulManagement) -> None:
        with pytest.raises(ManagementNotConfigured, match="CONTENTFUL_MANAGEMENT_TOKEN"):
            ManagementClient(settings_for(fake, management_token=None), space_id="s")


def test_demo_space_fits_the_model() -> None:
    """Every mb* entry of the bundled demo space uses only the model's fields, typed alike."""
    model = {t.id: {f["id"]: f for f in t.fields} for t in load_model()}
    items = json.loads((ROOT / "templates" / "demo-space.json").read_text())["sync"]["items"]
    checked = 0
    for item in items:
        type_id = item["sys"].get("contentType", {}).get("sys", {}).get("id")
        if type_id not in model:
            continue
        for field_id, values in item["fields"].items():
            assert field_id in model[type_id], f"{item['sys']['id']}: {type_id}.{field_id}"
            kind = model[type_id][field_id]["type"]
            assert all(_fits(kind, v) for v in values.values()), (item["sys"]["id"], field_id)
            checked += 1
    assert checked > 100


def _fits(kind: str, value: Any) -> bool:
    expected: dict[str, type | tuple[type, ...]] = {
        "Symbol": str,
        "Text": str,
        "Date": str,
        "Integer": int,
        "Number": (int, float),
        "Boolean": bool,
        "Object": dict,
        "Link": dict,
        "Array": list,
    }
    return isinstance(value, expected[kind])


# -- the command line -------------------------------------------------------------------------


def run_cli(
    fake: FakeContentfulManagement, *args: str, token: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTENTFUL_", "REDIS_", "BRIDGE_"))
    }
    env |= {
        "CONTENTFUL_MANAGEMENT_TOKEN": token or fake.token,
        "CONTENTFUL_MANAGEMENT_URL": fake.url,
        "CONTENTFUL_MAX_ATTEMPTS": "2",
    }
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "model",
            "apply",
            "--space-id",
            fake.space_id,
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Applying to an empty space: one change per content type and one per field.
CHANGES = sum(1 + len(model_type.fields) for model_type in load_model())


class TestCommand:
    def test_dry_run_prints_the_diff_and_changes_nothing(
        self, fake: FakeContentfulManagement
    ) -> None:
        result = run_cli(fake, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert "+ mbSettings: new content type (2 fields)" in result.stdout
        assert f"dry run: {CHANGES} change(s), nothing applied" in result.stderr
        assert fake.writes == []

    def test_yes_applies_and_a_second_run_says_nothing_changed(
        self, fake: FakeContentfulManagement
    ) -> None:
        first = run_cli(fake, "--yes")
        second = run_cli(fake, "--yes")
        assert first.returncode == 0, first.stderr
        assert (
            f"applied {CHANGES} change(s) to space piv6jnf4q2ia, environment master" in first.stderr
        )
        assert second.returncode == 0, second.stderr
        assert second.stdout == ""
        assert "no changes: space piv6jnf4q2ia, environment master already matches" in (
            second.stderr
        )

    def test_without_yes_and_without_a_terminal_it_refuses(
        self, fake: FakeContentfulManagement
    ) -> None:
        result = run_cli(fake)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert "stdin is not a terminal: pass --yes" in result.stderr
        assert fake.writes == []

    def test_a_field_holding_data_is_refused_with_exit_1(
        self, fake: FakeContentfulManagement
    ) -> None:
        seed_audience_with_extra_field(fake)
        fake.add_entry(AUDIENCE, {"legacyScore": {"en-US": 1}})
        result = run_cli(fake, "--yes")
        assert result.returncode == 1
        assert "! mbAudience.legacyScore: the model no longer has this field, but 1 entry" in (
            result.stdout
        )
        assert result.stderr.strip().count("\n") == 0
        assert "refused mbAudience.legacyScore" in result.stderr
        assert fake.writes == []

    def test_a_bad_token_is_one_line_and_exit_1(self, fake: FakeContentfulManagement) -> None:
        result = run_cli(fake, "--yes", token="CFPAT-wrong")
        assert result.returncode == 1
        assert result.stdout == ""
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("microbridge: model apply failed: ContentfulRequestRejected:")
        assert "401 AccessTokenInvalid" in line
        assert "CFPAT-wrong" not in line
