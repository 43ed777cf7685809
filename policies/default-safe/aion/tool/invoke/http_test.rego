package aion.tool.invoke

import rego.v1

import data.aion.lib.default_safe.testing as t

get(url) := t.invoke("http.get", {"url": url})

test_get_allowlisted_hosts_allowed if {
	every url in [
		"https://example.com",
		"https://example.com/",
		"https://example.com/docs?q=1#top",
		"HTTPS://EXAMPLE.COM/x",
		"https://example.com:443/x",
		"http://docs.company.local/page",
		"http://docs.company.local:80/page",
	] {
		count(deny) == 0 with input as get(url)
	}
}

# FIXTURES: `evilexample.com` ends with `example.com`.
test_get_suffix_lookalike_denied if {
	denied_by(get("https://evilexample.com/")) == {"default_safe.url_host_not_allowed"}
}

# FIXTURES: `example.com.evil.net` starts with `example.com`.
test_get_prefix_lookalike_denied if {
	denied_by(get("https://example.com.evil.net/x")) == {"default_safe.url_host_not_allowed"}
}

test_get_other_hosts_denied if {
	every url in [
		"https://evil.net/",
		"https://sub.example.com/",
		"https://example.com./",
		"https://example.co/",
		"http://evil.net#@example.com/",
		"http://evil.net?@example.com/",
		"https://example%2ecom/",
	] {
		denied_by(get(url)) == {"default_safe.url_host_not_allowed"}
	}
}

# FIXTURES: IP literals, v4 in every spelling and v6.
test_get_ip_literals_denied if {
	every url in [
		"http://127.0.0.1/",
		"http://169.254.169.254/latest/meta-data/",
		"http://2130706433/",
		"http://0x7f.0.0.1/",
		"http://0177.0.0.1/",
		"http://10.0.0.1:80/",
		"http://[::1]/",
		"http://[::ffff:127.0.0.1]:80/",
		"http://[fe80::1%25eth0]/",
		"http://::1/",
	] {
		reasons := denied_by(get(url))
		"default_safe.url_ip_literal" in reasons
		"default_safe.url_host_not_allowed" in reasons
	}
}

# `http://example.com@evil.net/` connects to evil.net.
test_get_userinfo_trick_denied if {
	denied_by(get("http://example.com@evil.net/")) == {"default_safe.url_userinfo", "default_safe.url_host_not_allowed"}
}

test_get_userinfo_on_allowed_host_denied if {
	denied_by(get("https://user:pass@example.com/")) == {"default_safe.url_userinfo"}
}

test_get_other_schemes_denied if {
	every url in ["ftp://example.com/x", "gopher://example.com/", "ws://example.com/", "file://example.com/etc/passwd"] {
		denied_by(get(url)) == {"default_safe.url_scheme_not_allowed"}
	}
	"default_safe.url_scheme_not_allowed" in denied_by(get("file:///etc/passwd"))
}

test_get_unparseable_urls_denied if {
	every url in [
		"example.com/x",
		"//example.com/x",
		"javascript:alert(1)",
		"http:/example.com",
		"https://example.com\\@evil.net/",
		"https://example.com /x",
		"https://example.com/\nHost: evil.net",
		"",
	] {
		denied_by(get(url)) == {"default_safe.url_invalid"}
	}
}

test_get_url_missing_or_not_a_string_denied if {
	every arguments in [{}, {"url": 1}, {"url": ["https://example.com/"]}] {
		denied_by(t.invoke("http.get", arguments)) == {"default_safe.url_invalid"}
	}
}

test_get_other_ports_denied if {
	every url in ["https://example.com:8443/", "https://example.com:80/", "http://example.com:443/", "https://example.com:/", "https://example.com:0443x/", "https://example.com:0443/", "http://example.com:080/", "https://example.com:00443/"] {
		denied_by(get(url)) == {"default_safe.url_port_not_allowed"}
	}
}

test_get_plain_http_warns if {
	t.ids(warn) == {"default_safe.url_plaintext"} with input as get("http://example.com/")
	count(warn) == 0 with input as get("https://example.com/")
}
