"""Errors of the assemble API."""

from __future__ import annotations

from core.errors import BridgeError


class AssemblyError(BridgeError):
    status_code = 422


class TemplateNotFound(AssemblyError):
    status_code = 404


class SlotNotFound(AssemblyError):
    status_code = 404


class UnknownLocale(AssemblyError):
    status_code = 422


class PreviewUnavailable(AssemblyError):
    status_code = 422


class ExperimentNotFound(AssemblyError):
    status_code = 404


class UnknownTarget(AssemblyError):
    """A kill switch names a template, slot or variant the library does not have."""

    status_code = 404


class SwitchNotSet(AssemblyError):
    status_code = 404


class LibraryNotLoaded(AssemblyError):
    status_code = 503


class ContentUnavailable(AssemblyError):
    """No library is live and the fallback has nothing for what was asked: not an unknown
    template (404), but content this replica cannot know yet."""

    status_code = 503
