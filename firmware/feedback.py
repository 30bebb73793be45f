"""Servo position feedback: the pot wiper read by the ESP32 ADC at 11 dB attenuation.

Calibration is the robot description's linear nominal one, folded into integer
constants at start so each tick costs one multiply and one divide, no floats:
    raw12 = read_u16 >> 4;  uV = raw12 * adc_uv_per_lsb + adc_uv_offset
    deg = (uV - pot_v_at_0) / pot_v_per_deg   (reported in 0.01 deg)
"""

import machine


def _gcd(a, b):
    while b:
        a, b = b, a % b
    return a


class Calibration:
    """raw u16 -> angle in 0.01 deg as (raw12 * mul + add) // div."""

    def __init__(self, fb):
        uv_per_deg = round(fb["pot_v_per_deg"] * 1000000)
        sign = -1 if uv_per_deg < 0 else 1
        mul = sign * 100 * round(fb["adc_uv_per_lsb"])
        add = sign * 100 * (round(fb["adc_uv_offset"]) - round(fb["pot_v_at_0"] * 1000000))
        div = abs(uv_per_deg)
        g = _gcd(_gcd(abs(mul), abs(add)), div)
        self.mul, self.div = mul // g, div // g
        self.add = add // g + self.div // 2  # round to nearest
        if abs(self.mul) * 4095 + abs(self.add) >= 1 << 29:
            raise ValueError("feedback calibration %r does not fit small integers" % fb)

    def angle(self, raw_u16):
        return ((raw_u16 >> 4) * self.mul + self.add) // self.div


class Feedback(Calibration):
    """One joint's pot: read() updates .raw (read_u16 counts) and .cdeg (0.01 deg)."""

    def __init__(self, joint):
        super().__init__(joint["feedback"])
        self.adc = machine.ADC(machine.Pin(joint["adc_pin"]))
        self.adc.atten(machine.ADC.ATTN_11DB)
        self.raw = 0
        self.cdeg = 0

    def read(self):
        raw = self.adc.read_u16()
        self.raw = raw
        self.cdeg = ((raw >> 4) * self.mul + self.add) // self.div
