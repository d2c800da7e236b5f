"""``langscale ingest``: load documents into the rag pipeline's vector store.

Files, or folders (every file below them), are read as UTF-8 text (files that are not are
skipped and counted), split into chunks, embedded with the provider's embeddings (batched
as in the worker) and upserted in batches, with a progress bar. A chunk's id is derived from
its file and position, so ingesting a file again replaces its chunks instead of adding
copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter
from tqdm import tqdm

from langscale.settings import Settings
from langscale_worker import providers
from langscale_worker.vectorstore import vector_store

BATCH = 64


@dataclass
class Ingested:
    files: int = 0
    skipped: int = 0
    chunks: int = 0


def files_of(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no file or folder {path}")
    return found


def chunks_of(
    files: Sequence[Path], chunk_size: int, overlap: int, report: Ingested
) -> list[tuple[str, Document]]:
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=overlap)
    chunks = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            report.skipped += 1
            continue
        report.files += 1
        source = str(path)
        for index, piece in enumerate(splitter.split_text(text)):
            chunk_id = hashlib.sha256(f"{source}\0{index}".encode()).hexdigest()[:32]
            chunks.append((chunk_id, Document(piece, metadata={"source": source, "chunk": index})))
    return chunks


async def ingest(
    settings: Settings,
    paths: Sequence[Path],
    chunk_size: int = 1000,
    overlap: int = 100,
    progress: bool = True,
) -> Ingested:
    report = Ingested()
    chunks = chunks_of(files_of(paths), chunk_size, overlap, report)
    embeddings = providers.embeddings(settings)
    store = vector_store(settings, embeddings)
    try:
        with tqdm(total=len(chunks), unit="chunk", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, len(chunks), BATCH):
                batch = chunks[start : start + BATCH]
                await store.add([i for i, _ in batch], [d for _, d in batch], embeddings)
                report.chunks += len(batch)
                bar.update(len(batch))
    finally:
        await store.close()
    return report


def run(settings: Settings, paths: Sequence[str], chunk_size: int, overlap: int) -> int:
    where = settings.vector_store_url or f"the embedded store {settings.vector_store_path}"
    try:
        report = asyncio.run(ingest(settings, [Path(p) for p in paths], chunk_size, overlap))
    except FileNotFoundError as error:
        print(f"langscale ingest: {error}", file=sys.stderr)
        return 2
    print(
        f"ingested {report.chunks} chunks from {report.files} files into {where}"
        + (f" ({report.skipped} files skipped: not UTF-8 text)" if report.skipped else "")
    )
    return 0
