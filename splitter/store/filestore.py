"""The state file as the store of one process: no other writer, so no conflict but its
own (a revision counted in memory), never unavailable (a disk error is raised as is)."""

from __future__ import annotations

from splitter.errors import StoreConflict
from splitter.state import StateFile
from splitter.store import Document, state_document, write_state_document


class FileStore:
    shared = False
    up = True

    def __init__(self, state_file: StateFile) -> None:
        self.state_file = state_file
        self.revision = 0

    async def load(self) -> tuple[int, Document]:
        return self.revision, state_document(self.state_file.data)

    async def save(self, doc: Document, revision: int, fence: str | None = None) -> int:
        if revision != self.revision:
            raise StoreConflict(f"revision {revision} is not {self.revision}")
        write_state_document(self.state_file.data, doc)
        self.state_file.save()  # atomically, before the change is in force
        self.revision += 1
        return self.revision
