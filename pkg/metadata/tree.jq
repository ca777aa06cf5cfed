# LinuxKit's user data as a file tree: one tab-separated line per entry, parents first:
#   d PERM PATH            a directory
#   f PERM PATH BASE64     a file and its content
# Names are single path components; anything else is an error naming the entry.
def tree($prefix):
  to_entries[]
  | .key as $name
  | .value as $entry
  | "\($prefix)\($name)" as $path
  | if ($name | test("^[^/\t\n]+$")) and $name != "." and $name != ".." then .
    else error("\($path): not a file name") end
  | if ($entry | type) == "object" then .
    else error("\($path): an entry is an object: {perm, content} or {perm, entries}") end
  | ($entry.perm // (if $entry.entries then "0755" else "0644" end)) as $perm
  | if ($perm | type) == "string" and ($perm | test("^[0-7]{3,4}$")) then .
    else error("\($path): perm must be an octal string such as \"0644\"") end
  | if $entry.entries != null then
      if ($entry.entries | type) == "object" then .
      else error("\($path): entries must be an object") end
      | "d\t\($perm)\t\($path)\t", ($entry.entries | tree("\($path)/"))
    else
      "f\t\($perm)\t\($path)\t\(($entry.content // "") | tostring | @base64)"
    end;
tree("")
