# http.get: `context.arguments.url` is parsed the way an HTTP client reads it
# (RFC 3986: scheme "://" [userinfo "@"] host [":" port] path), and the host
# must equal an allowlisted name exactly. A suffix check would pass
# `evilexample.com` and `example.com.evil.net`; `http://example.com@evil.net/`
# goes to evil.net. IP literals are refused: they name no allowlisted host.
package aion.tool.invoke

import rego.v1

http_allowlist := tool_lists["http.get"]

# The URL, defined only for a string free of whitespace, backslashes and
# control characters (clients disagree on those, so none is accepted).
get_url := url if {
	tool == "http.get"
	url := input.context.arguments.url
	is_string(url)
	not regex.match(`[\s\\\x00-\x1f\x7f]`, url)
}

url_parts := {"scheme": lower(match[1]), "authority": match[2]} if {
	[match] := regex.find_all_string_submatch_n(`^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([/?#].*)?$`, get_url, 1)
}

# The authority without any userinfo: what the client would connect to.
url_hostport := parts[count(parts) - 1] if parts := split(url_parts.authority, "@")

url_host := lower(parts[0]) if {
	parts := split(url_hostport, ":")
	count(parts) <= 2
	not startswith(url_hostport, "[")
}

url_port := parts[1] if {
	parts := split(url_hostport, ":")
	count(parts) == 2
}

deny contains reason if {
	tool == "http.get"
	not url_parts
	reason := {
		"id": "default_safe.url_invalid",
		"msg": "http.get needs `arguments.url` as an absolute URL (scheme://host/...) without spaces, backslashes or control characters",
	}
}

deny contains reason if {
	not url_parts.scheme in http_allowlist.schemes
	reason := {
		"id": "default_safe.url_scheme_not_allowed",
		"msg": sprintf("URL scheme %q is not allowed; allowed: %v", [url_parts.scheme, http_allowlist.schemes]),
	}
}

deny contains reason if {
	contains(url_parts.authority, "@")
	reason := {
		"id": "default_safe.url_userinfo",
		"msg": sprintf("URLs with userinfo (`user@host`) are not allowed: %q", [get_url]),
	}
}

deny contains reason if {
	ip_literal
	reason := {
		"id": "default_safe.url_ip_literal",
		"msg": sprintf("IP literals are not allowed as hosts: %q", [url_hostport]),
	}
}

deny contains reason if {
	url_parts
	not host_allowed
	reason := {
		"id": "default_safe.url_host_not_allowed",
		"msg": sprintf("host of %q is not one of %v", [get_url, http_allowlist.hosts]),
		"url": get_url,
	}
}

deny contains reason if {
	url_port
	not port_allowed
	reason := {
		"id": "default_safe.url_port_not_allowed",
		"msg": sprintf("port %q is not allowed for %s; allowed: %v", [url_port, url_parts.scheme, object.get(http_allowlist.ports, url_parts.scheme, [])]),
	}
}

warn contains reason if {
	url_parts.scheme == "http"
	reason := {
		"id": "default_safe.url_plaintext",
		"msg": sprintf("%q is fetched without TLS", [get_url]),
	}
}

# IPv6 in brackets, or bare (more than one colon).
ip_literal if startswith(url_hostport, "[")

ip_literal if count(split(url_hostport, ":")) > 2

# Dotted, decimal, octal and hex IPv4 forms (`127.0.0.1`, `2130706433`, `0x7f.1`).
ip_literal if regex.match(`^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$`, url_host)

# Undefined for a host that cannot be read (an IPv6 literal): not allowed either.
host_allowed if url_host in http_allowlist.hosts

# A port is digits without a leading zero (`0443` is not 443 to every parser).
port_allowed if {
	regex.match(`^[1-9][0-9]{0,4}$`, url_port)
	to_number(url_port) in object.get(http_allowlist.ports, url_parts.scheme, [])
}
