"""Parse and extraction in worker processes, off the event loop, under time and memory
limits.

Why our own small pool instead of ProcessPoolExecutor: a hung C extension (pdfium,
calamine) cannot be interrupted, and an executor cannot kill one task; a worker that dies
breaks the whole executor. Here each worker is a multiprocessing.Process with a pipe. The
parent sends one job at a time and waits in a thread; on timeout the worker is killed
(SIGKILL) and replaced, and the caller gets a MessageView with a "timeout" or
"worker_died" problem — never an exception, never a lost message.

Jobs: one "parse" job per message (raw bytes -> MessageView without attachment texts),
then one "extract" job per attachment, each with its own deadline inside the message
deadline. The per-message decompression/text budget travels with the jobs.

Modules: pool (the main process side: ExtractionPool), worker (the loop in the child
process), wire (how results cross the pipe without stalling the event loop).
"""

from guard.inspect.isolate.pool import ExtractionPool

__all__ = ["ExtractionPool"]
