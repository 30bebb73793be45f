"""Telemetry sessions: an append-only, self-describing file per recording, and loading it as numpy columns.

Spec: SESSIONS.md. Write with SessionWriter (feed it Link(on_bytes=writer.append_bytes)); read with
load(path) -> Session; list with list_sessions(directory).
"""

from host.sessions.load import Session, find_session, list_sessions, load
from host.sessions.store import NotASessionError, SessionWriteError, SessionWriter, sessions_dir

__all__ = ["Session", "SessionWriter", "SessionWriteError", "NotASessionError", "find_session", "list_sessions",
           "load", "sessions_dir"]
