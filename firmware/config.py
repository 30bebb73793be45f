"""The robot description: /robot.json on the board (hardware/gen0.json copied there).

Checked once at start, so a bad file is one clear error on the port, not a crash mid-loop.
"""

import json

# Relative: the working directory is the flash root on the ESP32 (/) and on the virtual Gen0.
PATH = "robot.json"
DEFAULT_XFER_MAX_BYTES = 32768  # largest transfer held in RAM (the ESP32 has ~100 KB of heap)


class ConfigError(Exception):
    pass


def load(path=PATH):
    """The checked robot description as a dict (ConfigError says what to fix)."""
    try:
        f = open(path)
    except OSError:
        raise ConfigError("%s missing: copy hardware/gen0.json there (`host flash` does it)" % path)
    try:
        cfg = json.load(f)
    except ValueError as e:
        raise ConfigError("%s is not valid JSON (%s): reinstall it with `host flash`" % (path, e))
    finally:
        f.close()
    check(cfg)
    return cfg


def check(cfg):
    """Raise ConfigError for the first missing or out-of-range setting; fill in defaults."""
    if not isinstance(cfg, dict):
        raise ConfigError("robot.json must hold one JSON object")
    loop = _get(cfg, "loop", dict)
    _num(loop, "rate_hz", 10, 1000, "loop.")
    _num(loop, "telemetry_every", 0, 1000, "loop.")
    loop.setdefault("max_rx_bytes_per_tick", 64)
    _num(loop, "max_rx_bytes_per_tick", 1, 260, "loop.")
    link = cfg.setdefault("link", {})
    if not isinstance(link, dict):
        raise ConfigError("robot.json: link must be an object, e.g. {\"baud\": 115200}")
    link.setdefault("baud", 115200)
    _num(link, "baud", 0, 10000000, "link.")  # 0: native USB, no UART to pace the output for
    cfg.setdefault("idle", "hold")
    if cfg["idle"] not in ("hold", "limp"):
        raise ConfigError("robot.json: idle must be \"hold\" or \"limp\", not %r" % cfg["idle"])
    _num(cfg, "watchdog_ms", 10, 60000)
    cfg.setdefault("xfer_max_bytes", DEFAULT_XFER_MAX_BYTES)
    _num(cfg, "xfer_max_bytes", 256, 1 << 20)
    joints = _get(cfg, "joints", list)
    if not joints:
        raise ConfigError("robot.json: joints is empty")
    for i, j in enumerate(joints):
        where = "joints[%d]." % i
        name = _get(j, "name", str, where)
        if not name or not all(c.isalpha() or c.isdigit() or c == "_" for c in name):
            raise ConfigError("robot.json: %sname %r must be letters, digits and _" % (where, name))
        for k in ("pwm_pin", "adc_pin"):
            _num(j, k, 0, 48, where)
        j.setdefault("pwm_freq_hz", 50)
        _num(j, "pwm_freq_hz", 40, 400, where)
        _num(j, "min_us", 300, 3000, where)
        _num(j, "max_us", j["min_us"] + 1, 3000, where)
        for k in ("center_us", "rest_us"):
            j.setdefault(k, (j["min_us"] + j["max_us"]) // 2)
            _num(j, k, j["min_us"], j["max_us"], where)
        fb = _get(j, "feedback", dict, where)
        for k in ("pot_v_at_0", "pot_v_per_deg", "adc_uv_per_lsb", "adc_uv_offset"):
            _num(fb, k, -1e7, 1e7, where + "feedback.")
        if fb["pot_v_per_deg"] == 0:
            raise ConfigError("robot.json: %sfeedback.pot_v_per_deg must not be 0" % where)
    imu = cfg.get("imu")
    if imu is not None:
        for k in ("i2c_id", "scl_pin", "sda_pin", "i2c_freq", "addr"):
            _num(imu, k, 0, 10000000, "imu.")
        for k, ok in (("accel_fs_g", (2, 4, 8, 16)), ("gyro_fs_dps", (250, 500, 1000, 2000))):
            if imu.get(k) not in ok:
                raise ConfigError("robot.json: imu.%s must be one of %s" % (k, ok))
        imu.setdefault("dlpf_cfg", 0)
        imu.setdefault("smplrt_div", 0)
        _num(imu, "dlpf_cfg", 0, 6, "imu.")
        _num(imu, "smplrt_div", 0, 255, "imu.")
    return cfg


def _get(d, key, kind, where=""):
    if key not in d:
        raise ConfigError("robot.json: %s%s is missing" % (where, key))
    if not isinstance(d[key], kind):
        raise ConfigError("robot.json: %s%s must be a %s" % (where, key, kind.__name__))
    return d[key]


def _num(d, key, lo, hi, where=""):
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError("robot.json: %s%s must be a number in %s..%s, not %r" % (where, key, lo, hi, v))
    return v
