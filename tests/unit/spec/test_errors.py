"""Invalid specs: every error is reported at its exact line and column, with a clear message."""

from __future__ import annotations

import textwrap

import pytest

from osbuilder.spec import SpecValueError, check_sources

HEAD = """\
kernel:
  image: osbuilder/kernel
init:
  - osbuilder/init
"""
# HEAD is 4 lines: errors in the cases below start at line 5.


def errors(text: str, name: str = "t.yml") -> list[str]:
    loaded, diagnostics = check_sources([(name, textwrap.dedent(text))])
    found = [str(d) for d in diagnostics if d.severity == "error"]
    assert (loaded is None) == bool(found)
    return found


CASES = [
    # --- unknown keys, with suggestions -------------------------------------------------------
    (
        "typo-in-service",
        HEAD + "services:\n  - name: redis\n    image: redis\n    capabilites: [CAP_CHOWN]\n",
        ["t.yml:8:5: services[0]: unknown field 'capabilites' (did you mean 'capabilities'?)"],
    ),
    (
        # (found by the fuzz test) a key that is a line break is quoted: one line still
        "a-key-that-does-not-print",
        HEAD + 'onboot:\n  - name: a\n    image: a\n    annotations:\n      "\\n\\n": null\n',
        ['t.yml:9:15: onboot[0].annotations["\\n\\n"]: expected a string, got null'],
    ),
    (
        "typo-top-level",
        HEAD + "servces:\n  - name: a\n",
        ["t.yml:5:1: unknown field 'servces' (did you mean 'services'?)"],
    ),
    (
        "unknown-top-level-no-suggestion",
        HEAD + "unknownField: 1\n",
        ["t.yml:5:1: unknown field 'unknownField'"],
    ),
    (
        "typo-in-kernel",
        "kernel:\n  image: k\n  cmdlin: console=ttyS0\n",
        ["t.yml:3:3: kernel: unknown field 'cmdlin' (did you mean 'cmdline'?)"],
    ),
    (
        "typo-binds-add",
        HEAD + "onboot:\n  - name: a\n    image: a\n    bind.add: [/a:/a]\n",
        ["t.yml:8:5: onboot[0]: unknown field 'bind.add' (did you mean 'binds.add'?)"],
    ),
    (
        "typo-in-file",
        HEAD + "files:\n  - path: etc/a\n    content: x\n",
        [
            "t.yml:6:5: files[0]: set exactly one of contents, source, directory, symlink, "
            "metadata (found none)",
            "t.yml:7:5: files[0]: unknown field 'content' (did you mean 'contents'?)",
        ],
    ),
    (
        "typo-in-resources",
        HEAD + "services:\n  - name: a\n    image: a\n    resources:\n      memroy:\n"
        "        limit: 1\n",
        ["t.yml:9:7: services[0].resources: unknown field 'memroy' (did you mean 'memory'?)"],
    ),
    (
        "typo-in-runtime-interface",
        HEAD + "onboot:\n  - name: a\n    image: a\n    runtime:\n      interfaces:\n"
        "        - name: eth0\n          createinroot: true\n",
        [
            "t.yml:11:11: onboot[0].runtime.interfaces[0]: unknown field 'createinroot' "
            "(did you mean 'createInRoot'?)"
        ],
    ),
    (
        "typo-in-volume",
        HEAD + "volumes:\n  - name: v\n    read_only: true\n",
        ["t.yml:7:5: volumes[0]: unknown field 'read_only' (did you mean 'readonly'?)"],
    ),
    (
        "typo-in-trust",
        HEAD + "trust:\n  orgs: [linuxkit]\n",
        ["t.yml:6:3: trust: unknown field 'orgs' (did you mean 'org'?)"],
    ),
    # --- wrong types --------------------------------------------------------------------------
    (
        "init-not-a-list",
        "init: osbuilder/init\n",
        ["t.yml:1:7: init: expected a list, got a string 'osbuilder/init'"],
    ),
    (
        "services-not-a-list",
        HEAD + "services:\n  name: a\n",
        ["t.yml:6:3: services: expected a list, got a mapping"],
    ),
    (
        "kernel-not-a-mapping",
        "kernel: osbuilder/kernel\n",
        ["t.yml:1:9: kernel: expected a mapping, got a string 'osbuilder/kernel'"],
    ),
    (
        "command-a-string",
        HEAD + "onboot:\n  - name: a\n    image: a\n    command: /bin/true\n",
        ["t.yml:8:14: onboot[0].command: expected a list, got a string '/bin/true'"],
    ),
    (
        "readonly-a-string",
        HEAD + "services:\n  - name: a\n    image: a\n    readonly: 'yes'\n",
        [
            "t.yml:8:15: services[0].readonly: expected a boolean (true or false), "
            "got a string 'yes'"
        ],
    ),
    (
        "oomscoreadj-a-string",
        HEAD + "services:\n  - name: a\n    image: a\n    oomScoreAdj: '-500'\n",
        ["t.yml:8:18: services[0].oomScoreAdj: expected an integer, got a string '-500'"],
    ),
    (
        "oomscoreadj-out-of-range",
        HEAD + "services:\n  - name: a\n    image: a\n    oomScoreAdj: -2000\n",
        ["t.yml:8:18: services[0].oomScoreAdj: must be at least -1000, got -2000"],
    ),
    (
        "sysctl-value-not-a-string",
        HEAD + "onboot:\n  - name: a\n    image: a\n    sysctl:\n      net.ipv4.ip_forward: 1\n",
        ["t.yml:9:28: onboot[0].sysctl.net.ipv4.ip_forward: expected a string, got an integer 1"],
    ),
    (
        "env-entry-a-number",
        HEAD + "services:\n  - name: a\n    image: a\n    env:\n      - 42\n",
        ["t.yml:9:9: services[0].env[0]: expected a string, got an integer 42"],
    ),
    (
        "name-missing",
        HEAD + "services:\n  - image: redis\n",
        ["t.yml:6:5: services[0]: missing required field 'name'"],
    ),
    (
        "image-missing",
        HEAD + "onboot:\n  - name: dhcpcd\n    command: [dhcpcd]\n",
        ["t.yml:6:5: onboot[0]: missing required field 'image'"],
    ),
    (
        "device-major-a-string",
        HEAD + "onboot:\n  - name: a\n    image: a\n    devices:\n      - path: /dev/x\n"
        "        type: c\n        major: 'ten'\n",
        ["t.yml:11:16: onboot[0].devices[0].major: expected an integer, got a string 'ten'"],
    ),
    (
        "metadata-format",
        HEAD + "files:\n  - path: etc/cfg\n    metadata: toml\n",
        ["t.yml:7:15: files[0].metadata: must be one of 'yaml' or 'json', got a string 'toml'"],
    ),
    (
        "volume-format",
        HEAD + "volumes:\n  - name: v\n    format: ext4\n",
        [
            "t.yml:7:13: volumes[0].format: must be one of 'oci' or 'filesystem', "
            "got a string 'ext4'"
        ],
    ),
    # --- capabilities -------------------------------------------------------------------------
    (
        "unknown-capability",
        HEAD + "services:\n  - name: a\n    image: a\n    capabilities:\n      - CAP_CHOWN\n"
        "      - CAP_NET_BIND\n",
        [
            "t.yml:10:9: services[0].capabilities[1]: unknown capability 'CAP_NET_BIND' "
            "(did you mean 'CAP_NET_BIND_SERVICE'?)"
        ],
    ),
    (
        "capability-without-prefix",
        HEAD + "services:\n  - name: a\n    image: a\n    capabilities.add: [net_admin]\n",
        [
            "t.yml:8:24: services[0].capabilities.add[0]: unknown capability 'net_admin' "
            "(did you mean 'CAP_NET_ADMIN'?)"
        ],
    ),
    (
        "all-not-alone",
        HEAD + "services:\n  - name: a\n    image: a\n    capabilities: [CAP_CHOWN, all]\n",
        [
            "t.yml:8:19: services[0].capabilities: 'all' stands for a whole set and must be "
            "the list's only entry"
        ],
    ),
    (
        "ambient-unknown",
        HEAD + "services:\n  - name: a\n    image: a\n    ambient: [CAP_FLY]\n",
        ["t.yml:8:15: services[0].ambient[0]: unknown capability 'CAP_FLY'"],
    ),
    # --- image references ---------------------------------------------------------------------
    (
        "reference-uppercase",
        HEAD + "services:\n  - name: a\n    image: osbuilder/Redis\n",
        [
            "t.yml:7:12: services[0].image: image reference 'osbuilder/Redis' has an invalid "
            "repository component 'Redis' (lowercase letters, digits and single '.', '_' or '-' "
            "separators)"
        ],
    ),
    (
        "reference-bad-digest",
        HEAD + "onboot:\n  - name: a\n    image: redis@sha256:1234\n",
        [
            "t.yml:7:12: onboot[0].image: image reference 'redis@sha256:1234' has an invalid "
            "digest 'sha256:1234' (expected ALGORITHM:HEX, e.g. sha256:<64 hex digits>)"
        ],
    ),
    (
        "reference-bad-tag",
        "init:\n  - osbuilder/init:-bad\n",
        [
            "t.yml:2:5: init[0]: image reference 'osbuilder/init:-bad' has an invalid tag "
            "'-bad' (letters, digits, '_', '.', '-'; at most 128; not starting with '.' or '-')"
        ],
    ),
    (
        "kernel-reference-space",
        "kernel:\n  image: 'osbuilder/kernel 6.1'\n",
        ["t.yml:2:10: kernel.image: image reference 'osbuilder/kernel 6.1' contains whitespace"],
    ),
    # --- names --------------------------------------------------------------------------------
    (
        "duplicate-service",
        HEAD + "services:\n  - name: getty\n    image: a\n  - name: getty\n    image: b\n",
        ["t.yml:8:11: services[1].name: duplicate service name 'getty' (first at t.yml:6:11)"],
    ),
    (
        "duplicate-volume",
        HEAD + "volumes:\n  - name: data\n  - name: data\n",
        ["t.yml:7:11: volumes[1].name: duplicate volume name 'data' (first at t.yml:6:11)"],
    ),
    (
        "volume-name-uppercase",
        HEAD + "volumes:\n  - name: Data\n",
        [
            "t.yml:6:11: volumes[0].name: volume name must match ^[a-z0-9_-]*$ (lowercase, "
            "digits, '_', '-'), got 'Data'"
        ],
    ),
    (
        "container-name-slash",
        HEAD + "onboot:\n  - name: ../evil\n    image: a\n",
        [
            "t.yml:6:11: onboot[0].name: container name must use only letters, digits, '_', "
            "'+', ',', '.', '-' (a runc container id), not start with '-' nor be '.' or '..', "
            "got '../evil'"
        ],
    ),
    # --- files --------------------------------------------------------------------------------
    (
        "file-mode-unquoted",
        HEAD + "files:\n  - path: etc/motd\n    contents: hi\n    mode: 0644\n",
        [
            't.yml:8:11: files[0].mode: mode must be a quoted octal string such as "0644"; '
            "YAML read this one as the number 420 (write it in quotes)"
        ],
    ),
    (
        "file-mode-not-octal",
        HEAD + "files:\n  - path: etc/motd\n    contents: hi\n    mode: '0999'\n",
        ["t.yml:8:11: files[0].mode: mode must be an octal string such as '0644', got '0999'"],
    ),
    (
        "file-two-kinds",
        HEAD + "files:\n  - path: etc/motd\n    contents: hi\n    source: motd.txt\n",
        [
            "t.yml:6:5: files[0]: set exactly one of contents, source, directory, symlink, "
            "metadata (found contents and source)"
        ],
    ),
    (
        "file-no-kind",
        HEAD + "files:\n  - path: etc/motd\n    mode: '0644'\n",
        [
            "t.yml:6:5: files[0]: set exactly one of contents, source, directory, symlink, "
            "metadata (found none)"
        ],
    ),
    (
        "file-optional-without-source",
        HEAD + "files:\n  - path: etc/motd\n    contents: hi\n    optional: true\n",
        ["t.yml:8:5: files[0]: 'optional' applies only to a file with 'source'"],
    ),
    (
        "file-path-escapes",
        HEAD + "files:\n  - path: ../etc/passwd\n    contents: x\n",
        ["t.yml:6:11: files[0].path: path must not contain '..', got '../etc/passwd'"],
    ),
    (
        "file-path-missing",
        HEAD + "files:\n  - contents: x\n",
        ["t.yml:6:5: files[0]: missing required field 'path'"],
    ),
    # --- binds, tmpfs, rlimits, env, cwd ------------------------------------------------------
    (
        "bind-without-colon",
        HEAD + "services:\n  - name: a\n    image: a\n    binds:\n      - /var/run\n",
        [
            "t.yml:9:9: services[0].binds[0]: bind must be 'source:destination[:options]', "
            "got '/var/run'"
        ],
    ),
    (
        "bind-too-many-colons",
        HEAD + "services:\n  - name: a\n    image: a\n    binds.add: ['/a:/b:ro:x']\n",
        [
            "t.yml:8:17: services[0].binds.add[0]: bind must be 'source:destination[:options]', "
            "got '/a:/b:ro:x'"
        ],
    ),
    (
        "bind-relative-destination",
        HEAD + "services:\n  - name: a\n    image: a\n    binds: ['/a:b']\n",
        [
            "t.yml:8:13: services[0].binds[0]: bind destination must be an absolute path, got "
            "'b' in '/a:b'"
        ],
    ),
    (
        "bind-undeclared-volume",
        HEAD + "volumes:\n  - name: data\nservices:\n  - name: a\n    image: a\n"
        "    binds: ['dat:/data']\n",
        [
            "t.yml:10:13: services[0].binds[0]: bind source 'dat' is not a declared volume: "
            "declare it under 'volumes' or use an absolute host path (did you mean 'data'?)"
        ],
    ),
    (
        "bind-rw-of-readonly-volume",
        HEAD + "volumes:\n  - name: vola\n    readonly: true\nonboot:\n  - name: a\n"
        "    image: a\n    binds:\n      - vola:/vola\n",
        [
            "t.yml:12:9: onboot[0].binds[0]: volume 'vola' is read-only: bind it with the "
            "'ro' option"
        ],
    ),
    (
        "tmpfs-relative",
        HEAD + "services:\n  - name: a\n    image: a\n    tmpfs: [run]\n",
        ["t.yml:8:13: services[0].tmpfs[0]: tmpfs destination must be an absolute path, got 'run'"],
    ),
    (
        "rlimit-unknown",
        HEAD + "services:\n  - name: a\n    image: a\n    rlimits: ['nofiles,1,2']\n",
        [
            "t.yml:8:15: services[0].rlimits[0]: unknown rlimit 'nofiles' (did you mean "
            "'RLIMIT_NOFILE'?)"
        ],
    ),
    (
        "rlimit-shape",
        HEAD + "services:\n  - name: a\n    image: a\n    rlimits: ['nofile,1024']\n",
        [
            "t.yml:8:15: services[0].rlimits[0]: rlimit must be 'name,soft,hard' (e.g. "
            "'nofile,1024,4096'), got 'nofile,1024'"
        ],
    ),
    (
        "env-without-equals",
        HEAD + "services:\n  - name: getty\n    image: a\n    env:\n      - INSECURE\n",
        ["t.yml:9:9: services[0].env[0]: environment entries are 'NAME=value', got 'INSECURE'"],
    ),
    (
        "cwd-relative",
        HEAD + "services:\n  - name: a\n    image: a\n    cwd: root\n",
        ["t.yml:8:10: services[0].cwd: must be an absolute path, got 'root'"],
    ),
    # --- uid / gid ----------------------------------------------------------------------------
    (
        "uid-unknown-name",
        HEAD + "services:\n  - name: redis\n    image: a\n    uid: rediss\n",
        [
            "t.yml:8:10: services[0].uid: unknown user 'rediss': a name must be 'root' or the "
            "name of a container in the spec (did you mean 'redis'?)"
        ],
    ),
    (
        "gid-boolean",
        HEAD + "services:\n  - name: a\n    image: a\n    gid: true\n",
        [
            "t.yml:8:10: services[0].gid: expected a numeric id or the name of a container, "
            "got a boolean"
        ],
    ),
    (
        "uid-negative",
        HEAD + "services:\n  - name: a\n    image: a\n    uid: -1\n",
        ["t.yml:8:10: services[0].uid: id -1 is out of range (0 to 4294967295)"],
    ),
    (
        "additional-gid-unknown",
        HEAD + "services:\n  - name: a\n    image: a\n    additionalGids: [0, nobody]\n",
        [
            "t.yml:8:25: services[0].additionalGids[1]: unknown user 'nobody': a name must be "
            "'root' or the name of a container in the spec"
        ],
    ),
    (
        "file-uid-unknown",
        HEAD + "files:\n  - path: etc/a\n    contents: x\n    uid: web\n",
        [
            "t.yml:8:10: files[0].uid: unknown user 'web': a name must be 'root' or the name "
            "of a container in the spec"
        ],
    ),
    # --- namespaces ---------------------------------------------------------------------------
    (
        "net-typo",
        HEAD + "services:\n  - name: a\n    image: a\n    net: hots\n",
        [
            "t.yml:8:10: services[0].net: net must be 'host', 'new', 'none' or the path of a "
            "namespace to join (e.g. /proc/1/ns/net), got 'hots' (did you mean 'host'?)"
        ],
    ),
    (
        "pid-none",
        HEAD + "services:\n  - name: a\n    image: a\n    pid: none\n",
        [
            "t.yml:8:10: services[0].pid: pid must be 'host', 'new' or the path of a namespace "
            "to join (e.g. /proc/1/ns/pid), got 'none'"
        ],
    ),
    (
        "uts-relative-path",
        HEAD + "services:\n  - name: a\n    image: a\n    uts: run/uts\n",
        [
            "t.yml:8:10: services[0].uts: uts must be 'host', 'new' or the path of a namespace "
            "to join (e.g. /proc/1/ns/uts), got 'run/uts'"
        ],
    ),
    (
        "ipc-number",
        HEAD + "services:\n  - name: a\n    image: a\n    ipc: 1\n",
        ["t.yml:8:10: services[0].ipc: expected a string, got an integer 1"],
    ),
    (
        "propagation",
        HEAD + "services:\n  - name: a\n    image: a\n    rootfsPropagation: share\n",
        [
            "t.yml:8:24: services[0].rootfsPropagation: rootfsPropagation must be one of "
            "shared, slave, private, rshared, rslave, rprivate, unbindable, runbindable, got "
            "'share' (did you mean 'shared'?)"
        ],
    ),
    (
        "device-type",
        HEAD + "onboot:\n  - name: a\n    image: a\n    devices:\n      - path: /dev/x\n"
        "        type: block\n",
        [
            "t.yml:10:15: onboot[0].devices[0].type: device type must be one of a, b, c, u, p "
            "(all, block, char, unbuffered char, fifo), got 'block'"
        ],
    ),
    (
        "device-all-with-a-path",
        HEAD + "onboot:\n  - name: a\n    image: a\n    devices:\n      - path: /dev/x\n"
        "        type: a\n",
        ["t.yml:9:9: onboot[0].devices[0]: type 'a' (all devices) goes with path 'all' only"],
    ),
    (
        "device-without-numbers",
        HEAD + "onboot:\n  - name: a\n    image: a\n    devices:\n      - path: /dev/x\n"
        "        type: c\n        major: 1\n",
        ["t.yml:9:9: onboot[0].devices[0]: a type 'c' device needs major and minor"],
    ),
    (
        "hugepage-size-not-whole-kilobytes",
        HEAD + "onboot:\n  - name: a\n    image: a\n    resources:\n      hugepageLimits:\n"
        "        - pageSize: 1000\n",
        [
            "t.yml:10:21: onboot[0].resources.hugepageLimits[0].pageSize: pageSize must be a "
            "whole number of KB, in bytes (e.g. 2097152), got 1000"
        ],
    ),
    (
        "mount-without-a-type",
        HEAD + "onboot:\n  - name: a\n    image: a\n    mounts:\n      - destination: /x\n",
        ["t.yml:9:9: onboot[0].mounts[0]: mount for destination '/x' is missing a type"],
    ),
    (
        "mount-without-a-destination",
        HEAD + "onboot:\n  - name: a\n    image: a\n    mounts:\n      - type: tmpfs\n",
        ["t.yml:9:9: onboot[0].mounts[0]: mount of type 'tmpfs' is missing a destination"],
    ),
    (
        "platform",
        HEAD + "volumes:\n  - name: v\n    format: oci\n    platforms: [amd64]\n",
        [
            "t.yml:8:17: volumes[0].platforms[0]: platform must be 'os/arch[/variant]' (e.g. "
            "linux/amd64), got 'amd64'"
        ],
    ),
    # --- YAML itself --------------------------------------------------------------------------
    (
        "yaml-syntax",
        HEAD + "services:\n  - name: a\n     image: b\n",
        ["t.yml:7:11: YAML syntax error: mapping values are not allowed in this context"],
    ),
    (
        "yaml-duplicate-key",
        HEAD + "services:\n  - name: a\n    image: b\n    name: c\n",
        ["t.yml:8:5: duplicate key 'name' (first at line 6)"],
    ),
    (
        "yaml-tab-indent",
        "kernel:\n\timage: k\n",
        ["t.yml:2:1: YAML syntax error: a tab cannot indent YAML; use spaces"],
    ),
    (
        "yaml-two-documents",
        HEAD + "---\nservices: []\n",
        ["t.yml:6:1: a spec file holds one YAML document; split multiple specs into files"],
    ),
    (
        "yaml-top-level-list",
        "- kernel\n- init\n",
        ["t.yml:1:1: expected a mapping, got a list"],
    ),
    (
        "yaml-non-string-key",
        HEAD + "services:\n  - name: a\n    image: b\n    1: x\n",
        ["t.yml:8:5: mapping keys must be strings, got an integer '1'"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_reports_exact_location_and_message(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def test_all_errors_of_a_file_are_reported_at_once() -> None:
    text = HEAD + (
        "services:\n"
        "  - name: redis\n"  # 6
        "    image: redis\n"
        "    capabilites: [CAP_CHOWN]\n"  # 8
        "    net: hots\n"  # 9
        "  - name: redis\n"  # 10
        "    image: Redis\n"  # 11
        "files:\n"
        "  - path: etc/x\n"  # 13
        "    mode: 0644\n"  # 14
    )
    lines = [e.split(": ")[0] for e in errors(text)]
    assert lines == [
        "t.yml:8:5",
        "t.yml:9:10",
        "t.yml:10:11",
        "t.yml:11:12",
        "t.yml:13:5",
        "t.yml:14:11",
    ]


def test_errors_of_several_files_name_their_file() -> None:
    base = HEAD + "services:\n  - name: getty\n    image: getty\n"
    extra = "services:\n  - name: getty\n    image: getty2\n    bogus: 1\n"
    loaded, diagnostics = check_sources([("base.yml", base), ("extra.yml", extra)])
    assert loaded is None
    assert [str(d) for d in diagnostics] == [
        "extra.yml:2:11: services[1].name: duplicate service name 'getty' (first at base.yml:6:11)",
        "extra.yml:4:5: services[0]: unknown field 'bogus'",
    ]


def test_a_value_the_build_cannot_use_is_located_in_the_file_that_set_it() -> None:
    """What only the build finds out (a missing source file, an image not in the store) is
    reported like validation's errors: FILE:LINE:COL, path, message, on each line."""
    extra = "# files\nfiles:\n  - path: etc/a\n    contents: a\n  - path: etc/b\n    source: /b\n"
    loaded, _ = check_sources([("base.yml", HEAD), ("extra.yml", extra)])
    assert loaded is not None
    problem = SpecValueError(("files", 1, "source"), "/b does not exist\nand cannot be made")
    assert str(loaded.locate(problem)).splitlines() == [
        "extra.yml:6:13: files[1].source: /b does not exist",
        "extra.yml:6:13: files[1].source: and cannot be made",
    ]
    missing = SpecValueError(("init", 0), "osbuilder/init is not in the content store")
    assert str(loaded.locate(missing)) == (
        "base.yml:4:5: init[0]: osbuilder/init is not in the content store"
    )
