# ops.shell: `context.arguments.command` is one command line. The old system
# checked a string prefix, so `ls; rm -rf /` passed as "ls". Here the line is
# refused outright when it holds any shell metacharacter (chaining, pipes,
# substitution, redirection, background, newlines) or anything the shell
# rewrites before running it (quotes, escapes, globs, braces): the policy must
# see the words the shell will see. The first word must be an allowlisted
# command exactly, and path operands must be readable paths.
package aion.tool.invoke

import rego.v1

shell_allowlist := tool_lists["ops.shell"]

# The command line, defined only for a non-empty string.
shell_command := command if {
	tool == "ops.shell"
	command := input.context.arguments.command
	is_string(command)
	trim_space(command) != ""
}

shell_words := regex.split(`\s+`, trim_space(shell_command))

deny contains reason if {
	tool == "ops.shell"
	not shell_command
	reason := {
		"id": "default_safe.shell_command_invalid",
		"msg": "ops.shell needs `arguments.command` as a non-empty string",
	}
}

deny contains reason if {
	found := [c | some c in shell_allowlist.metacharacters; contains(shell_command, c)]
	count(found) > 0
	reason := {
		"id": "default_safe.shell_metachar",
		"msg": sprintf("shell metacharacters are not allowed in ops.shell: %v", [found]),
		"found": found,
	}
}

deny contains reason if {
	command := shell_words[0]
	not command in shell_allowlist.commands
	reason := {
		"id": "default_safe.shell_command_not_allowed",
		"msg": sprintf("command %q is not allowed; allowed: %v", [command, shell_allowlist.commands]),
		"command": command,
	}
}

# `cat /etc/shadow` uses an allowed command on a forbidden file: every operand
# that names a path (has a slash or starts with `~`) must pass the file.read
# rules, so the shell is no way around them. Relative names without a slash
# stay in the tool's working directory, which the runtime sets.
deny contains reason if {
	some operand in array.slice(shell_words, 1, count(shell_words))
	names_path(operand)
	count(path_problems(operand)) > 0
	reason := {
		"id": "default_safe.shell_path_not_allowed",
		"msg": sprintf("ops.shell operand %q is not a readable path under %v", [operand, file_allowlist.roots]),
		"operand": operand,
	}
}

names_path(word) if contains(word, "/")

names_path(word) if startswith(word, "~")

# `..` alone leaves the working directory as surely as `../x` does.
names_path(word) if word == ".."
