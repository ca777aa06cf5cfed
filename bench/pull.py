#!/usr/bin/env python3
"""Benchmark: cold `osbuilder pull` against `skopeo copy` of the same image, and what
verifying its signatures adds.

A ~150 MB image of 6 layers of incompressible bytes is pushed to a docker-registry on
loopback, signed both ways (skopeo `--sign-by` into a file:// lookaside, and a
cosign-style sigstore signature attached as `sha256-HEX.sig`); then, interleaved, 5
cold pulls each: `osbuilder pull --cache EMPTY_DIR` under a policy that accepts
anything, the same under a policy requiring both signatures (fetched, gpgv run, ECDSA
checked), and `skopeo copy docker://... oci:EMPTY_DIR` (all write an OCI layout and
verify every digest). Prints the median times, the ratio osbuilder/skopeo (target
<= 0.8), the ratio signed/unsigned (target <= 1.10) and osbuilder's peak RSS (target
<= 100 MB: blobs are streamed, never held in memory).

`--https`: the registry as in the wild (tests/integration/tls.py): HTTPS from a private
CA through nginx's TLS front, every blob GET redirected to another host (127.0.0.2, nginx
serving the registry's storage over TLS), both clients trusting the CA ($SSL_CERT_FILE
for osbuilder, --src-cert-dir for skopeo); the signed pulls are left out (their
signatures name the plain-HTTP reference). Same targets for the ratio and the RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import OSBUILDER, byte_compile  # noqa: E402
from tests.integration.debrepo import SigningKey  # noqa: E402
from tests.integration.images import build_image, random_layers  # noqa: E402
from tests.integration.registry import Registry, running_registry  # noqa: E402
from tests.integration.signing import (  # noqa: E402
    CosignKey,
    attach,
    cosign_payload,
    skopeo_signed_push,
)
from tests.integration.tls import CertificateAuthority, running_wild_registry  # noqa: E402

IMAGE_SIZE = 150 * 1000 * 1000
LAYERS = 6
RUNS = 5


def timed_run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run `command`; return (wall seconds, peak RSS in bytes) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}):\n{stderr}")
    return elapsed, usage.ru_maxrss * 1024


def build_and_push(layout: Path, registry: Registry, key: SigningKey, registries_d: Path) -> str:
    """Push the image signed by `key` (a simple signature); returns its digest."""
    image = build_image(layout, random_layers(LAYERS, IMAGE_SIZE, seed=7), tag="v1")
    skopeo_signed_push(image, registry, "bench/big", key, registries_d)
    return image.digest


def write_policies(tmp: Path, key: SigningKey, cosign: CosignKey) -> tuple[Path, Path]:
    accept = tmp / "accept.json"
    accept.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    signed = tmp / "signed.json"
    requirements = [
        {"type": "signedBy", "keyType": "GPGKeys", "keyPath": str(key.keyring)},
        {"type": "sigstoreSigned", "keyPath": str(cosign.public)},
    ]
    signed.write_text(json.dumps({"default": requirements}))
    return accept, signed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--https",
        action="store_true",
        help="pull over HTTPS (private CA) with blob GETs redirected to another host",
    )
    args = parser.parse_args()
    if args.https:
        return main_https()
    byte_compile()
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp_name:
        tmp = Path(tmp_name)
        key = SigningKey.generate(tmp / "gpg", "bench signer")
        cosign = CosignKey(tmp / "cosign")
        registries_d = tmp / "registries.d"
        registries_d.mkdir()
        (registries_d / "lookaside.yaml").write_text(
            f"default-docker:\n  lookaside: file://{tmp / 'lookaside'}\n"
        )
        accept, signed_policy = write_policies(tmp, key, cosign)
        with running_registry(tmp / "registry") as registry:
            # Built in a child process: a child forked from a parent holding the image's
            # 150 MB would count them in its own peak RSS.
            with concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn")
            ) as builder:
                digest = builder.submit(
                    build_and_push, tmp / "layout", registry, key, registries_d
                ).result()
            ref = f"{registry.host}/bench/big:v1"
            payload = cosign_payload(ref, digest)
            attach(registry, "bench/big", digest, [(payload, cosign.sign(payload))])
            size = sum(p.stat().st_size for p in (tmp / "layout/blobs/sha256").iterdir())
            pull = [*OSBUILDER, "pull", "--registries-d", str(registries_d), "--policy"]
            ours, signed, theirs, rss = [], [], [], []
            for run in range(RUNS):
                store, layout = tmp / f"store-{run}", tmp / f"skopeo-{run}"
                elapsed, peak = timed_run([*pull, str(accept), "--cache", str(store), ref])
                ours.append(elapsed)
                rss.append(peak)
                shutil.rmtree(store)
                elapsed, peak = timed_run([*pull, str(signed_policy), "--cache", str(store), ref])
                signed.append(elapsed)
                rss.append(peak)
                elapsed, _ = timed_run(
                    [
                        "skopeo",
                        "--insecure-policy",
                        "copy",
                        "--quiet",
                        "--src-tls-verify=false",
                        f"docker://{ref}",
                        f"oci:{layout}:v1",
                    ]
                )
                theirs.append(elapsed)
                shutil.rmtree(store)
                shutil.rmtree(layout)
        key.close()
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    median_signed = statistics.median(signed)
    ratio = median_ours / median_theirs
    signed_ratio = median_signed / median_ours
    peak = max(rss)
    print(f"image: {size / 1e6:.0f} MB in {LAYERS} layers, {RUNS} interleaved cold pulls each")
    print(f"osbuilder pull: median {median_ours:.2f} s  ({', '.join(f'{t:.2f}' for t in ours)})")
    print(
        f"skopeo copy:    median {median_theirs:.2f} s  ({', '.join(f'{t:.2f}' for t in theirs)})"
    )
    print(
        f"osbuilder pull, both signatures verified: median {median_signed:.2f} s  "
        f"({', '.join(f'{t:.2f}' for t in signed)})"
    )
    print(f"ratio osbuilder/skopeo: {ratio:.2f} (target <= 0.8)")
    print(f"ratio signed/unsigned: {signed_ratio:.2f} (target <= 1.10)")
    print(f"osbuilder peak RSS: {peak / 1e6:.1f} MB (target <= 100 MB)")
    return 0 if ratio <= 0.8 and signed_ratio <= 1.10 and peak <= 100e6 else 1


def main_https() -> int:
    byte_compile()
    with tempfile.TemporaryDirectory(prefix="bench-pull-https-") as tmp_name:
        tmp = Path(tmp_name)
        ca = CertificateAuthority(tmp / "ca")
        cert_dir = tmp / "skopeo-certs"
        cert_dir.mkdir()
        (cert_dir / "ca.crt").write_bytes(ca.path.read_bytes())
        key = SigningKey.generate(tmp / "gpg", "bench signer")
        registries_d = tmp / "registries.d"
        registries_d.mkdir()
        (registries_d / "lookaside.yaml").write_text(
            f"default-docker:\n  lookaside: file://{tmp / 'lookaside'}\n"
        )
        accept, _ = write_policies(tmp, key, CosignKey(tmp / "cosign"))
        env = {**os.environ, "SSL_CERT_FILE": str(ca.path)}
        env.pop("SSL_CERT_DIR", None)
        with contextlib.ExitStack() as stack:
            wild = stack.enter_context(running_wild_registry(tmp / "wild", ca))
            with concurrent.futures.ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn")
            ) as builder:
                builder.submit(
                    build_and_push, tmp / "layout", wild.backend, key, registries_d
                ).result()
            ref = f"{wild.host}/bench/big:v1"
            size = sum(p.stat().st_size for p in (tmp / "layout/blobs/sha256").iterdir())
            pull = [*OSBUILDER, "pull", "--registries-d", str(registries_d), "--policy"]
            ours, theirs, rss = [], [], []
            for run in range(RUNS):
                store, layout = tmp / f"store-{run}", tmp / f"skopeo-{run}"
                elapsed, peak = timed_run([*pull, str(accept), "--cache", str(store), ref], env)
                ours.append(elapsed)
                rss.append(peak)
                elapsed, _ = timed_run(
                    [
                        "skopeo",
                        "--insecure-policy",
                        "copy",
                        "--quiet",
                        "--src-cert-dir",
                        str(cert_dir),
                        f"docker://{ref}",
                        f"oci:{layout}:v1",
                    ],
                    env,
                )
                theirs.append(elapsed)
                shutil.rmtree(store)
                shutil.rmtree(layout)
            redirected = sum(1 for line in wild.blob_requests() if line.status in (200, 206))
        key.close()
    median_ours, median_theirs = statistics.median(ours), statistics.median(theirs)
    ratio = median_ours / median_theirs
    peak = max(rss)
    print(
        f"image: {size / 1e6:.0f} MB in {LAYERS} layers, {RUNS} interleaved cold pulls each, "
        f"over HTTPS (private CA), blob GETs redirected to another host "
        f"({redirected} blob reads served there)"
    )
    print(f"osbuilder pull: median {median_ours:.2f} s  ({', '.join(f'{t:.2f}' for t in ours)})")
    print(
        f"skopeo copy:    median {median_theirs:.2f} s  ({', '.join(f'{t:.2f}' for t in theirs)})"
    )
    print(f"ratio osbuilder/skopeo: {ratio:.2f} (target <= 0.8)")
    print(f"osbuilder peak RSS: {peak / 1e6:.1f} MB (target <= 100 MB)")
    return 0 if ratio <= 0.8 and peak <= 100e6 else 1


if __name__ == "__main__":
    raise SystemExit(main())
