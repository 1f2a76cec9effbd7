"""vdeplug4 locator syntax: every form vde_plug accepts, the default switch, malformed input."""
import os

import pytest

from vde.locator import Locator, LocatorError, default_switch_path, parse_locator


@pytest.fixture
def no_system_switch(monkeypatch, tmp_path):
    """A fake HOME without ``.vdeplug/default`` and no ``/var/run/vde.ctl``."""
    real_exists = os.path.exists
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os.path, "exists",
                        lambda path: False if path == "/var/run/vde.ctl" else real_exists(path))
    return tmp_path


# --- the vde scheme --------------------------------------------------------------------

def test_plain_path_is_a_vde_switch():
    assert parse_locator("/tmp/sw") == Locator("vde", "/tmp/sw", {}, (), "/tmp/sw")


def test_vde_scheme_with_absolute_path():
    locator = parse_locator("vde:///tmp/sw")
    assert (locator.scheme, locator.path, locator.options, locator.nested) == \
        ("vde", "/tmp/sw", {}, ())


def test_vde_scheme_with_relative_path():
    assert parse_locator("vde://run/sw").path == "run/sw"


def test_bare_number_in_brackets_is_the_port():
    locator = parse_locator("vde:///tmp/sw[3]")
    assert locator.path == "/tmp/sw"
    assert locator.options == {"port": "3"}
    assert locator.int_option("port", 0) == 3


def test_named_options_in_brackets():
    locator = parse_locator("vde:///tmp/sw[port=3/mode=0770]")
    assert locator.options == {"port": "3", "mode": "0770"}
    assert locator.int_option("mode", None, base=8) == 0o770


def test_brackets_on_a_plain_path():
    assert parse_locator("/tmp/sw[12]").options == {"port": "12"}


def test_bare_word_in_brackets_is_a_flag():
    assert parse_locator("vde:///tmp/sw[port=2/hub]").options == {"port": "2", "hub": ""}


def test_empty_option_words_are_ignored():
    assert parse_locator("vde:///tmp/sw[/port=2//]").options == {"port": "2"}


def test_scheme_is_case_insensitive():
    assert parse_locator("VDE:///tmp/sw").scheme == "vde"


def test_missing_integer_option_gives_the_default():
    assert parse_locator("vde:///tmp/sw").int_option("port", 0) == 0


# --- the default switch ----------------------------------------------------------------

@pytest.mark.parametrize("text", [None, "", "   ", "vde://"])
def test_empty_locator_falls_back_to_tmp_vde_ctl(no_system_switch, text):
    locator = parse_locator(text)
    assert (locator.scheme, locator.path) == ("vde", "/tmp/vde.ctl")


def test_home_vdeplug_default_wins(no_system_switch):
    user_default = no_system_switch / ".vdeplug" / "default"
    user_default.mkdir(parents=True)
    assert parse_locator("").path == str(user_default)
    assert default_switch_path() == str(user_default)


def test_var_run_vde_ctl_comes_before_tmp(monkeypatch, tmp_path):
    real_exists = os.path.exists
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os.path, "exists",
                        lambda path: path == "/var/run/vde.ctl" or real_exists(path))
    assert parse_locator(None).path == "/var/run/vde.ctl"


def test_no_home_variable(monkeypatch, no_system_switch):
    monkeypatch.delenv("HOME")
    assert parse_locator("").path == "/tmp/vde.ctl"


def test_default_switch_with_a_port(no_system_switch):
    locator = parse_locator("vde://[4]")
    assert (locator.path, locator.options) == ("/tmp/vde.ctl", {"port": "4"})


# --- address schemes, nesting, verbatim ------------------------------------------------

def test_options_after_an_address():
    locator = parse_locator("vxvde://239.0.0.1/port=14789/vni=5")
    assert (locator.scheme, locator.address) == ("vxvde", "239.0.0.1")
    assert locator.options == {"port": "14789", "vni": "5"}


def test_ipv6_address_keeps_its_colons():
    locator = parse_locator("vxlan://ff05:56de::1/vni=42")
    assert (locator.address, locator.options) == ("ff05:56de::1", {"vni": "42"})


def test_address_scheme_without_options():
    assert parse_locator("tap://tap0") == Locator("tap", "tap0", {}, (), "tap://tap0")


def test_path_schemes_keep_slashes_in_the_path():
    locator = parse_locator("ptp:///tmp/link")
    assert (locator.path, locator.options) == ("/tmp/link", {})


def test_nested_locator_in_braces():
    locator = parse_locator("vlan://3{vde:///tmp/sw[2]}")
    assert (locator.scheme, locator.address, locator.options) == ("vlan", "3", {})
    (inner,) = locator.nested
    assert (inner.scheme, inner.path, inner.options) == ("vde", "/tmp/sw", {"port": "2"})


def test_several_nested_locators():
    locator = parse_locator("multi://{vde:///tmp/a}{vlan://4{vde:///tmp/b}}")
    first, second = locator.nested
    assert first.path == "/tmp/a"
    assert second.scheme == "vlan"
    assert second.nested[0].path == "/tmp/b"


def test_options_before_nested_locator():
    locator = parse_locator("vlan://3/trunk=1{vde:///tmp/sw}")
    assert locator.options == {"trunk": "1"}
    assert locator.nested[0].path == "/tmp/sw"


def test_cmd_keeps_its_command_verbatim():
    text = 'cmd://"ssh host lwplug [x] {y}/z=1"'
    locator = parse_locator(text)
    assert (locator.scheme, locator.path, locator.options) == \
        ("cmd", '"ssh host lwplug [x] {y}/z=1"', {})


def test_unknown_schemes_parse():
    locator = parse_locator("mem://lab/ports=4")
    assert (locator.scheme, locator.address, locator.options) == ("mem", "lab", {"ports": "4"})


def test_udp_arrow_syntax_is_the_address():
    assert parse_locator("udp://5000->10.0.0.2:5001").address == "5000->10.0.0.2:5001"


# --- malformed input -------------------------------------------------------------------

@pytest.mark.parametrize("text, reason", [
    ("vde:///tmp/sw[3", "'[' without a matching ']'"),
    ("vde:///tmp/sw]", "']' without a matching '['"),
    ("vde:///tmp/sw[3]x", "unexpected text 'x' after ']'"),
    ("vde:///tmp/sw[a[b]]", "unexpected text"),
    ("vlan://3{vde:///tmp/sw", "'{' without a matching '}'"),
    ("vlan://3}", "'}' without a matching '{'"),
    ("vlan://3{vde:///a}b", "unexpected text 'b' after '}'"),
    ("1vde:///tmp/sw", "bad scheme name '1vde'"),
    ("v de:///tmp/sw", "bad scheme name"),
    ("://tmp/sw", "bad scheme name ''"),
    ("vde:///tmp/sw[=3]", "bad option name ''"),
    ("vde:///tmp/sw[po rt=3]", "bad option name 'po rt'"),
    ("vde:///tmp/sw[3/port=4]", "option 'port' given twice"),
    ("vxvde://239.0.0.1/vni=1/vni=2", "option 'vni' given twice"),
    ("vde:///tmp/sw\n", "control characters"),
    ("cmd://", "needs a command"),
])
def test_malformed_locators_raise_a_one_line_locator_error(text, reason):
    with pytest.raises(LocatorError) as info:
        parse_locator(text)
    message = str(info.value)
    assert reason in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text, message", [
    ("vde:///tmp/sw[port=x]", "port must be a base-10 integer, got 'x'"),
    ("vde:///tmp/sw[port=-1]", "out of range"),
    ("vde:///tmp/sw[port=99999999]", "out of range 0..16777215"),
])
def test_bad_integer_options(text, message):
    with pytest.raises(LocatorError, match=message):
        parse_locator(text).int_option("port", 0, maximum=0xFFFFFF)


def test_non_string_locator_is_a_type_error():
    with pytest.raises(TypeError, match="locator must be a str"):
        parse_locator(b"/tmp/sw")
