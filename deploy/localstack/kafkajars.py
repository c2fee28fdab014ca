"""The Kafka broker's jars, fetched from Maven Central once, and the java command that runs them."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from deploy.localstack import prereqs
from deploy.localstack.errors import StackError
from deploy.localstack.processes import run
from deploy.localstack.profiles import REPO_ROOT

__all__ = ["KAFKA_VERSION", "ensure_jars", "jars_complete", "jars_dir", "java_command"]

KAFKA_VERSION = "4.1.1"  # keep in step with deploy/kafka/pom.xml
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
MAVEN_FETCH = (
    *("mvn", "-q", "-B", "-Dstyle.color=never"),
    *("-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime"),
)
COMPLETE_MARKER = ".complete"


def jars_dir() -> Path:
    """Where the broker's jars are cached, shared by every checkout and profile."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sagakit" / f"kafka-{KAFKA_VERSION}"


def java_command(jars: Path, *options: str) -> list[str]:
    """The java command line, up to the main class, with only the broker's jars on it."""
    java = prereqs.find_java()
    if java is None:
        raise StackError(f"Java 17 or newer not found: {prereqs.JAVA_FIX}")
    return [str(java), *options, "-cp", f"{jars}/*"]


def jars_complete() -> bool:
    return (jars_dir() / COMPLETE_MARKER).exists()


def ensure_jars() -> Path:
    """Fetch the broker's jars with Maven once; later runs use the cache."""
    target = jars_dir()
    if jars_complete():
        return target
    print(f"fetching the Kafka {KAFKA_VERSION} jars into {target} (once)...", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download next to the target and rename: a cache dir is complete or absent, even when
    # two stacks fetch at the same time or a fetch is interrupted.
    fetching = Path(tempfile.mkdtemp(prefix=f".kafka-{KAFKA_VERSION}-", dir=target.parent))
    try:
        run(
            [*MAVEN_FETCH, f"-DoutputDirectory={fetching}"],
            what="fetching the Kafka jars with Maven",
        )
        if not any(fetching.glob("kafka_2.13-*.jar")):
            raise StackError(f"Maven ran but left no Kafka jar in {fetching}")
        (fetching / COMPLETE_MARKER).touch()
        if not jars_complete():  # else another fetch finished first: keep theirs
            shutil.rmtree(target, ignore_errors=True)  # an interrupted fetch's leftover
            fetching.rename(target)
    finally:
        shutil.rmtree(fetching, ignore_errors=True)
    return target
