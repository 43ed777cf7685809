package aion.tool.invoke

import rego.v1

import data.aion.lib.default_safe.testing as t

read(path) := t.invoke("file.read", {"path": path})

test_read_under_allowed_roots_allowed if {
	every path in ["/data", "/data/", "/data/report.csv", "/data/a/b/c.txt", "/app/shared", "/app/shared/docs/readme.md"] {
		count(deny) == 0 with input as read(path)
	}
}

# FIXTURES: `/data2/secret` passes a naive `/data` prefix check.
test_read_sibling_of_root_denied if {
	denied_by(read("/data2/secret")) == {"default_safe.path_not_allowed"}
}

# FIXTURES: `/data/../etc/passwd` starts with /data but leaves it.
test_read_parent_traversal_denied if {
	denied_by(read("/data/../etc/passwd")) == {"default_safe.path_traversal"}
}

test_read_dot_segment_denied if {
	denied_by(read("/data/./x")) == {"default_safe.path_traversal"}
	"default_safe.path_traversal" in denied_by(read("/data/.."))
}

test_read_double_slash_denied if {
	denied_by(read("/data//x")) == {"default_safe.path_double_slash"}
	"default_safe.path_double_slash" in denied_by(read("//data/x"))
}

test_read_nul_and_control_characters_denied if {
	denied_by(read("/data/x.txt\u0000.png")) == {"default_safe.path_control_char"}
	"default_safe.path_control_char" in denied_by(read("/data/x\n"))
}

test_read_relative_path_denied if {
	"default_safe.path_not_absolute" in denied_by(read("data/report.csv"))
	"default_safe.path_not_absolute" in denied_by(read("../data/x"))
}

test_read_outside_roots_denied if {
	every path in ["/etc/passwd", "/", "/app", "/app/sharedx/a", "/app/secret/shared", "/Data/x"] {
		denied_by(read(path)) == {"default_safe.path_not_allowed"}
	}
}

test_read_reason_carries_the_path if {
	reasons := deny with input as read("/etc/passwd")
	some reason in reasons
	reason.path == "/etc/passwd"
}

test_read_path_missing_or_not_a_string_denied if {
	every arguments in [{}, {"path": 42}, {"path": ["/data/x"]}, {"file": "/data/x"}] {
		denied_by(t.invoke("file.read", arguments)) == {"default_safe.path_invalid"}
	}
}
