# file.read: `context.arguments.path` must be an absolute, normalised path
# inside an allowed root, compared segment by segment. A string-prefix check
# would accept `/data2/secret` for root `/data`, and `/data/../etc/passwd`
# anywhere; both are refused here. The same checks guard ops.shell operands.
package aion.tool.invoke

import rego.v1

file_allowlist := tool_lists["file.read"]

read_path := path if {
	tool == "file.read"
	path := input.context.arguments.path
	is_string(path)
}

deny contains reason if {
	tool == "file.read"
	not read_path
	reason := {
		"id": "default_safe.path_invalid",
		"msg": "file.read needs `arguments.path` as a string",
	}
}

deny contains reason if {
	some id in path_problems(read_path)
	reason := {"id": id, "msg": sprintf("%s: %q", [path_messages[id], read_path]), "path": read_path}
}

path_messages := {
	"default_safe.path_not_absolute": "path must be absolute",
	"default_safe.path_control_char": "path must not contain NUL or control characters",
	"default_safe.path_double_slash": "path must not contain empty segments (`//`)",
	"default_safe.path_traversal": "path must not contain `.` or `..` segments",
	"default_safe.path_not_allowed": sprintf("path must lie under one of %v", [file_allowlist.roots]),
}

# Why a path may not be read, as a set of reason ids; empty when it may.
path_problems(path) := {id |
	some id, _ in path_messages
	path_fails(id, path)
}

path_fails("default_safe.path_not_absolute", path) if not startswith(path, "/")

path_fails("default_safe.path_control_char", path) if regex.match(`[\x00-\x1f\x7f]`, path)

path_fails("default_safe.path_double_slash", path) if contains(path, "//")

path_fails("default_safe.path_traversal", path) if {
	some segment in split(path, "/")
	segment in {".", ".."}
}

path_fails("default_safe.path_not_allowed", path) if not under_allowed_root(path)

# Segment-wise prefix: `/data/x` is under `/data`, `/data2/x` is not.
under_allowed_root(path) if {
	segments := path_segments(path)
	some root in file_allowlist.roots
	prefix := path_segments(root)
	array.slice(segments, 0, count(prefix)) == prefix
}

path_segments(path) := [segment | some segment in split(path, "/"); segment != ""]
