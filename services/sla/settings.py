"""SLA settings (prefix GRIDHUB_SLA_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gridhub.kernel.settings import CommonSettings, require_secret
from services.sla.alerts import AlertPolicy


class SlaSettings(BaseSettings):
    """Settings of the SLA service."""

    model_config = SettingsConfigDict(env_prefix="GRIDHUB_SLA_", extra="ignore", frozen=True)

    common: CommonSettings = Field(default_factory=CommonSettings)
    port: int = Field(8103, description="Port of /tasks/{id}, /metrics, /healthz, /readyz.")
    host: str = "127.0.0.1"
    calendar_files: tuple[Path, ...] = Field(
        (), description="holiday-cn JSON files that fill or override years of the statutory calendar."
    )
    calendar_poll_s: float = Field(
        60.0, gt=0, description="Seconds between checks of the calendar files for changes (then reloaded)."
    )
    admin_keys: tuple[str, ...] = Field(
        ("dev-operator",),
        description="Operator keys (JSON list) for POST /calendar/reload (Authorization: Bearer <key>); "
        "required in prod (dev- values refused).",
    )
    duty_list: Path | None = Field(
        None,
        description="Duty list file the escalation chain is read from (units, townships); the packaged one if unset.",
    )
    data_dir: Path | None = Field(
        None, description="Where the per-partition state files live; <GRIDHUB_DATA_DIR>/sla if unset."
    )
    warning_fractions: tuple[float, ...] = Field(
        (0.5, 0.8), description="Warnings before breach: fractions of each clock's running time, in [0.001, 1)."
    )
    escalate_township_after_s: float = Field(
        4 * 3600, gt=0, description="Seconds after the deadline an overdue clock is escalated to the township centre."
    )
    escalate_county_after_s: float = Field(
        24 * 3600, gt=0, description="Seconds after the deadline it is escalated to the county command centre."
    )
    escalate_supervision_after_s: float = Field(
        72 * 3600, gt=0, description="Seconds after the deadline it is handed to the supervision office (督办)."
    )
    reminder_interval_s: float = Field(
        24 * 3600, gt=0, description="Repeat reminders of the current step every so many seconds."
    )
    final_reminders: int = Field(
        7, ge=0, le=1000, description="Reminders after the last step (督办), then the clock's alerts end."
    )
    timer_batch: int = Field(
        2000, ge=1, le=100_000, description="Most due alerts one timer round raises (all partitions)."
    )
    timer_idle_s: float = Field(
        1.0, gt=0, le=60, description="Longest the timer sleeps when nothing is due (new timers wake it sooner)."
    )

    @model_validator(mode="after")
    def _steps_in_order(self) -> SlaSettings:
        self.alert_policy()  # raises on fractions outside (0, 1) or escalation steps out of order
        require_secret(self.common.mode, "GRIDHUB_SLA_ADMIN_KEYS", {k: k for k in self.admin_keys})
        return self

    def alert_policy(self) -> AlertPolicy:
        """The alert plan's parameters."""
        return AlertPolicy(
            warning_fractions=tuple(self.warning_fractions),
            escalate_after=(
                timedelta(seconds=self.escalate_township_after_s),
                timedelta(seconds=self.escalate_county_after_s),
                timedelta(seconds=self.escalate_supervision_after_s),
            ),
            reminder_interval=timedelta(seconds=self.reminder_interval_s),
            final_reminders=self.final_reminders,
        )

    def store_dir(self) -> Path:
        """Directory of the per-partition SQLite files."""
        return self.data_dir if self.data_dir is not None else self.common.data_dir / "sla"
