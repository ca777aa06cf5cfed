"""Spec locks (spec/lock.py): the file format, its errors, and a lock against its spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.cli import main
from osbuilder.spec import SpecInvalid, load_spec
from osbuilder.spec.images import image_references
from osbuilder.spec.lock import (
    LockedImage,
    SpecLock,
    coverage_errors,
    format_lock,
    lock_command,
    lock_path,
    moved,
    parse_lock,
    read_lock,
)

INDEX = "sha256:" + "1" * 64
AMD64 = "sha256:" + "2" * 64
ARM64 = "sha256:" + "3" * 64
SINGLE = "sha256:" + "4" * 64
NEWER = "sha256:" + "5" * 64
FIX = "write the lock afresh: osbuilder lock s.yml"

SPEC = """\
kernel:
  image: osbuilder/kernel:1
init:
  - osbuilder/init:1
volumes:
  - name: data
    image: osbuilder/data:1
onboot:
  - name: dhcpcd
    image: osbuilder/dhcpcd:1
services:
  - name: redis
    image: redis:7
"""
# Where SPEC names each image: (line, column).
SPEC_LINES = {
    "osbuilder/kernel:1": (2, 10),
    "osbuilder/init:1": (4, 5),
    "osbuilder/data:1": (7, 12),
    "osbuilder/dhcpcd:1": (10, 12),
    "redis:7": (13, 12),
}


def locked(*references: str, platforms: tuple[str, ...] = ("linux/amd64",)) -> SpecLock:
    images = {
        reference: LockedImage(reference, SINGLE, dict.fromkeys(platforms, SINGLE))
        for reference in references
    }
    return SpecLock("s.yml.lock", images)


def lock_text(*references: str, platforms: tuple[str, ...] = ("linux/amd64",)) -> str:
    return format_lock(locked(*references, platforms=platforms), ["s.yml"])


def parse_error(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(SpecInvalid) as caught:
        parse_lock(data, "s.yml.lock", ["s.yml"])
    lines = str(caught.value).splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- the format -------------------------------------------------------------------------------


def test_a_lock_reads_back_as_written_sorted_one_block_per_image() -> None:
    lock = SpecLock(
        "s.yml.lock",
        {
            "redis:7": LockedImage(
                "redis:7", INDEX, {"linux/arm64/v8": ARM64, "linux/amd64": AMD64}
            ),
            "osbuilder/init:1": LockedImage("osbuilder/init:1", SINGLE, {"linux/amd64": SINGLE}),
        },
    )
    text = format_lock(lock, ["s.yml", "../common.yml"])
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "`osbuilder lock s.yml ../common.yml`" in "\n".join(header)
    assert "`osbuilder lock --check s.yml ../common.yml`" in "\n".join(header)
    assert text.splitlines()[len(header) :] == [
        f"osbuilder/init:1 {SINGLE}",
        f"  linux/amd64 {SINGLE}",
        f"redis:7 {INDEX}",
        f"  linux/amd64 {AMD64}",
        f"  linux/arm64/v8 {ARM64}",
    ]
    again = parse_lock(text.encode(), "s.yml.lock", ["s.yml"])
    assert {ref: (i.digest, i.manifests) for ref, i in again.images.items()} == {
        ref: (i.digest, i.manifests) for ref, i in lock.images.items()
    }
    first = len(header) + 1
    assert [again.images[r].line for r in ("osbuilder/init:1", "redis:7")] == [first, first + 2]
    assert again.platforms == ["linux/amd64", "linux/arm64/v8"]
    assert format_lock(again, ["s.yml", "../common.yml"]) == text


def test_blank_lines_comments_crlf_and_platform_spellings_are_read() -> None:
    text = f"\r\n# a note\r\nredis:7 {INDEX}\r\n\t linux/arm64 {ARM64}\r\n\r\n  # why\r\n"
    lock = parse_lock(text.encode(), "s.yml.lock", ["s.yml"])
    assert lock.images["redis:7"].manifests == {"linux/arm64/v8": ARM64}
    assert lock.images["redis:7"].line == 3


def test_a_spec_on_standard_input_or_at_a_url_has_no_lock_beside_it() -> None:
    assert lock_path("examples/redis.yml") == Path("examples/redis.yml.lock")
    assert lock_path("-") is None
    assert lock_path("https://example.com/redis.yml") is None


def test_the_command_in_messages_is_one_a_shell_takes() -> None:
    assert lock_command(["my spec.yml"]) == "osbuilder lock 'my spec.yml'"
    assert (
        lock_command(["a.yml"], ["linux/amd64", "linux/arm64/v8"])
        == "osbuilder lock --arch amd64 --arch arm64 a.yml"
    )
    assert lock_command(["a.yml"], check=True) == "osbuilder lock --check a.yml"


def test_no_lock_file_is_no_lock(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "s.yml.lock", ["s.yml"]) is None


# --- a malformed lock: one line, at its place, with the fix ---------------------------------


def _conflict() -> str:
    ours = lock_text("redis:7").splitlines()
    return "\n".join([*ours[:-2], "<<<<<<< HEAD", *ours[-2:], "=======", ">>>>>>> b"]) + "\n"


HEADER_LINES = len(lock_text().splitlines())  # an image's line is HEADER_LINES + 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            _conflict(),
            f"s.yml.lock:{HEADER_LINES + 1}:1: a merge conflict (<<<<<<<) is left in the lock: "
            f"settle the spec's conflict, then {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\n=======\n",
            f"s.yml.lock:3:1: a merge conflict (=======) is left in the lock: "
            f"settle the spec's conflict, then {FIX}",
        ),
        (
            lock_text("redis:7")[:-20],
            f"s.yml.lock:{HEADER_LINES + 2}:15: 'sha256:{'4' * 45}' is not a digest (sha256: "
            f"and 64 hex digits; a truncated file?); {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\nosbuilder/init:1\n",
            f"s.yml.lock:3:1: expected 'REFERENCE DIGEST', found one word (a truncated file?); "
            f"{FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\nosbuilder/init:1 {SINGLE}\n",
            f"s.yml.lock:3:1: osbuilder/init:1 has no platform line under it (a truncated "
            f"file?); {FIX}",
        ),
        (
            f"redis:7 {INDEX} {AMD64}\n",
            f"s.yml.lock:1:1: expected 'REFERENCE DIGEST', found 3 words; {FIX}",
        ),
        (
            f"  linux/amd64 {AMD64}\nredis:7 {INDEX}\n",
            f"s.yml.lock:1:3: platform line with no image line above it; {FIX}",
        ),
        (
            f"Redis:7 {INDEX}\n  linux/amd64 {AMD64}\n",
            "s.yml.lock:1:1: image reference 'Redis:7' has an invalid repository component "
            f"'Redis' (lowercase letters, digits and single '.', '_' or '-' separators); {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/mips {AMD64}\n",
            f"s.yml.lock:2:3: architecture 'mips' is not supported; use one of amd64, arm64; {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\n  linux/amd64 {AMD64}\n",
            f"s.yml.lock:3:3: linux/amd64 is locked twice for redis:7; {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\n\nredis:7 {NEWER}\n  linux/amd64 {AMD64}\n",
            f"s.yml.lock:4:1: redis:7 is locked twice (first at line 1); {FIX}",
        ),
        (
            f"redis:7 {INDEX}\n  linux/amd64 {AMD64}\n".encode() + b"\xff\xfe\n",
            f"s.yml.lock:3:1: not UTF-8 text (invalid start byte); {FIX}",
        ),
        (
            f"redis:7 md5:{'0' * 32}\n  linux/amd64 {AMD64}\n",
            f"s.yml.lock:1:9: 'md5:{'0' * 32}' is not a digest (sha256: and 64 hex digits; a "
            f"truncated file?); {FIX}",
        ),
    ],
    ids=[
        "conflict-markers",
        "conflict-separator",
        "truncated-digest",
        "truncated-reference-line",
        "truncated-after-an-image",
        "three-words",
        "platform-first",
        "bad-reference",
        "bad-platform",
        "platform-twice",
        "image-twice",
        "not-utf8",
        "not-sha256",
    ],
)
def test_a_malformed_lock_is_one_line_at_its_place_with_the_fix(
    text: str | bytes, expected: str
) -> None:
    assert parse_error(text) == expected


def test_a_malformed_lock_is_one_line_from_the_command_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yml"
    spec.write_text("services:\n  - name: redis\n    image: redis:7\n")
    lock = tmp_path / "s.yml.lock"
    lock.write_text(_conflict())
    code = main(["build", "--offline", "--cache", str(tmp_path / "store"), str(spec)])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == (
        f"osbuilder: {lock}:{HEADER_LINES + 1}:1: a merge conflict (<<<<<<<) is left in the "
        f"lock: settle the spec's conflict, then write the lock afresh: osbuilder lock {spec}\n"
    )


# --- a lock against its spec ------------------------------------------------------------------


def spec_file(tmp_path: Path, text: str = SPEC) -> str:
    path = tmp_path / "s.yml"
    path.write_text(text)
    return str(path)


def test_every_image_reference_of_a_spec_is_found_where_it_is(tmp_path: Path) -> None:
    loaded = load_spec([spec_file(tmp_path)])
    found = [
        (reference, path, loaded.document.value_location(path))
        for reference, path in image_references(loaded.spec)
    ]
    assert [(reference, path) for reference, path, _ in found] == [
        ("osbuilder/kernel:1", ("kernel", "image")),
        ("osbuilder/init:1", ("init", 0)),
        ("osbuilder/data:1", ("volumes", 0, "image")),
        ("osbuilder/dhcpcd:1", ("onboot", 0, "image")),
        ("redis:7", ("services", 0, "image")),
    ]
    assert {ref: (where.line, where.column) for ref, _, where in found} == SPEC_LINES


def test_a_lock_covering_the_spec_has_nothing_to_say(tmp_path: Path) -> None:
    loaded = load_spec([spec := spec_file(tmp_path)])
    assert coverage_errors(locked(*SPEC_LINES), loaded, ["linux/amd64"], [spec]) == []


def test_an_image_missing_from_the_lock_is_told_at_the_spec_line_naming_it(
    tmp_path: Path,
) -> None:
    loaded = load_spec([spec := spec_file(tmp_path)])
    lock = locked("osbuilder/kernel:1", "osbuilder/init:1", "osbuilder/data:1")
    errors = [str(e) for e in coverage_errors(lock, loaded, ["linux/amd64"], [spec])]
    assert errors == [
        f"{spec}:10:12: onboot[0].image: osbuilder/dhcpcd:1 is not in the lock s.yml.lock; "
        f"lock it: osbuilder lock {spec}",
        f"{spec}:13:12: services[0].image: redis:7 is not in the lock s.yml.lock; "
        f"lock it: osbuilder lock {spec}",
    ]


def test_an_entry_the_spec_no_longer_names_is_told_at_the_lock_line(tmp_path: Path) -> None:
    loaded = load_spec([spec := spec_file(tmp_path)])
    text = lock_text(*SPEC_LINES, "redis:6")
    lock = parse_lock(text.encode(), "s.yml.lock", [spec])
    line = lock.images["redis:6"].line
    assert text.splitlines()[line - 1].startswith("redis:6 ")
    assert [str(e) for e in coverage_errors(lock, loaded, ["linux/amd64"], [spec])] == [
        f"s.yml.lock:{line}:1: redis:6 is locked, but the spec no longer names it; write the "
        f"lock afresh: osbuilder lock {spec}"
    ]


def test_a_platform_the_lock_lacks_is_named_once_with_the_command_that_adds_it(
    tmp_path: Path,
) -> None:
    loaded = load_spec([spec := spec_file(tmp_path)])
    text = lock_text(*SPEC_LINES)
    lock = parse_lock(text.encode(), "s.yml.lock", [spec])
    first = min(image.line for image in lock.images.values())
    assert [str(e) for e in coverage_errors(lock, loaded, ["linux/arm64/v8"], [spec])] == [
        f"s.yml.lock:{first}:1: linux/arm64/v8 is not locked (the lock holds linux/amd64); "
        f"lock every platform you build: osbuilder lock --arch amd64 --arch arm64 {spec}"
    ]


def test_an_image_locked_for_fewer_platforms_than_the_others_is_named(tmp_path: Path) -> None:
    loaded = load_spec([spec := spec_file(tmp_path, "init:\n  - a:1\n  - b:1\n")])
    text = lock_text("a:1", platforms=("linux/amd64", "linux/arm64/v8"))
    text += f"b:1 {SINGLE}\n  linux/amd64 {SINGLE}\n"
    lock = parse_lock(text.encode(), "s.yml.lock", [spec])
    line = lock.images["b:1"].line
    assert [str(e) for e in coverage_errors(lock, loaded, ["linux/arm64/v8"], [spec])] == [
        f"s.yml.lock:{line}:1: b:1 is not locked for linux/arm64/v8; lock every platform you "
        f"build: osbuilder lock --arch amd64 --arch arm64 {spec}"
    ]


def test_images_of_several_files_are_told_in_file_order(tmp_path: Path) -> None:
    first = spec_file(tmp_path, "init:\n  - a:1\n")
    second = tmp_path / "more.yml"
    second.write_text("services:\n  - name: b\n    image: b:1\ninit:\n  - c:1\n")
    loaded = load_spec([first, second])
    errors = [str(e) for e in coverage_errors(locked(), loaded, [], [first, str(second)])]
    relock = f"lock it: osbuilder lock {first} {second}"
    assert errors == [
        f"{first}:2:5: init[0]: a:1 is not in the lock s.yml.lock; {relock}",
        f"{second}:3:12: services[0].image: b:1 is not in the lock s.yml.lock; {relock}",
        f"{second}:5:5: init[1]: c:1 is not in the lock s.yml.lock; {relock}",
    ]


def test_what_moved_is_told_with_both_digests_at_the_lock_line() -> None:
    text = lock_text("a:1", "b:1", "c:1")
    lock = parse_lock(text.encode(), "s.yml.lock", ["s.yml"])
    current = {
        "a:1": LockedImage("a:1", SINGLE, {"linux/amd64": SINGLE}),
        "b:1": LockedImage("b:1", NEWER, {"linux/amd64": NEWER}),
        "c:1": LockedImage("c:1", SINGLE, {"linux/amd64": AMD64}),
    }
    b, c = lock.images["b:1"].line, lock.images["c:1"].line
    assert [str(d) for d in moved(lock, current)] == [
        f"s.yml.lock:{b}:1: b:1 has moved: locked {SINGLE}, now {NEWER}",
        f"s.yml.lock:{c}:1: c:1 linux/amd64: locked manifest {SINGLE}, but {SINGLE} has "
        f"{AMD64} (a lock edited by hand?)",
    ]


def test_lock_of_a_spec_on_standard_input_says_where_locks_go(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["lock", "--offline", "-"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == (
        "osbuilder: -: a lock goes beside the first spec file, and standard input has no "
        "place beside it; give a spec file first\n"
    )
