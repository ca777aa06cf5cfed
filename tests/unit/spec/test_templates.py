"""`@pkg:PATH` image templates: the reference `pkg show-tag` gives, paths relative to the
spec file, and a located error for each template that cannot be expanded."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from osbuilder.pkg.recipe import load_recipe
from osbuilder.pkg.tag import package_reference, template_reference
from osbuilder.spec import check_sources
from osbuilder.spec.loader import STDIN_NAME, load_spec

REPO = Path(__file__).resolve().parents[3]


def recipe_copy(tmp_path: Path, name: str) -> Path:
    """A copy of the repository's recipe pkg/NAME at tmp_path/pkg/NAME."""
    target = tmp_path / "pkg" / name
    shutil.copytree(REPO / "pkg" / name, target)
    return target


def spec_file(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "system.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_template_is_the_reference_the_recipe_builds_relative_to_the_spec_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = recipe_copy(tmp_path, "redis")
    path = spec_file(
        tmp_path / "specs",
        """\
        init:
          - "@pkg:../pkg/redis"
        services:
          - name: redis
            image: "@pkg:../pkg/redis"
        volumes:
          - name: data
            image: "@pkg:ABSOLUTE"
        """.replace("ABSOLUTE", str(redis)),  # an absolute path stays as it is
    )
    monkeypatch.chdir(REPO)  # not the spec's directory: paths are relative to the file
    spec = load_spec([path], template_reference).spec
    reference = package_reference(load_recipe(redis))
    assert reference.startswith("osbuilder/redis:")
    assert spec.init == [reference]
    assert spec.services is not None and spec.services[0].image == reference
    assert spec.volumes is not None and spec.volumes[0].image == reference

    # A change of the recipe is a new reference: no tag to edit in the spec.
    (redis / "build.yml").write_text((redis / "build.yml").read_text() + "\n# changed\n")
    changed = load_spec([path], template_reference).spec
    assert changed.init is not None and changed.init[0] != reference
    assert changed.init[0] == package_reference(load_recipe(redis))


def test_a_template_that_cannot_be_expanded_is_one_located_error(tmp_path: Path) -> None:
    recipe_copy(tmp_path, "redis")
    (tmp_path / "pkg/broken").mkdir()
    (tmp_path / "pkg/broken/build.yml").write_text("image: osbuilder/broken\nbogus: 1\n")
    path = spec_file(
        tmp_path,
        """\
        kernel:
          image: "@pkg:pkg/none"
        init:
          - "@pkg:pkg/broken"
          - "@git:pkg/redis"
          - "@pkg:pkg/redis"
        """,
    )
    loaded, diagnostics = check_sources([(str(path), None)], template_reference)
    assert loaded is None
    assert [str(d) for d in diagnostics] == [
        f"{path}:2:10: kernel.image: @pkg:pkg/none: {tmp_path}/pkg/none holds no package "
        "recipe (build.yml)",
        f"{path}:4:5: init[0]: @pkg:pkg/broken: its recipe is invalid: "
        f"{tmp_path}/pkg/broken/build.yml:2:1: unknown field 'bogus'",
        f"{path}:5:5: init[1]: unknown template '@git' in '@git:pkg/redis'; the one there "
        "is: @pkg:PATH",
    ]


def test_a_spec_from_standard_input_cannot_use_templates(tmp_path: Path) -> None:
    loaded, diagnostics = check_sources(
        [(STDIN_NAME, 'init: ["@pkg:pkg/redis"]\n')], template_reference
    )
    assert loaded is None
    assert [str(d) for d in diagnostics] == [
        "<stdin>:1:8: init[0]: @pkg:pkg/redis: a @pkg: path is relative to its spec file, "
        "and this spec was read from standard input; give the file itself"
    ]


def test_the_caller_resolves_each_recipe_once_and_spec_alone_resolves_none(
    tmp_path: Path,
) -> None:
    # (spec builds on no part of pkg: what a recipe builds is the resolver's to say)
    path = spec_file(
        tmp_path,
        """\
        init:
          - "@pkg:pkg/a"
          - "@pkg:pkg/a"
          - "@pkg:pkg/b"
        """,
    )
    asked: list[Path] = []

    def resolver(directory: Path) -> str:
        asked.append(directory)
        return f"example.org/{directory.name}:1"

    spec = load_spec([path], resolver).spec
    assert spec.init == ["example.org/a:1", "example.org/a:1", "example.org/b:1"]
    assert asked == [tmp_path / "pkg/a", tmp_path / "pkg/b"]

    loaded, diagnostics = check_sources([(str(path), None)])
    assert loaded is None
    assert str(diagnostics[0]) == (
        f"{path}:2:5: init[0]: @pkg:pkg/a: @pkg: templates are not expanded here"
    )
