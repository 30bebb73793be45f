"""Hobby-servo PWM: 50 Hz pulses whose width is the command, always clamped to the joint's limits.

A PWM duty write costs a peripheral call, so a pulse is written only when it changes.
"""

import machine


class Servo:
    def __init__(self, joint):
        self.pin = machine.Pin(joint["pwm_pin"])
        self.freq = joint["pwm_freq_hz"]
        self.lo = joint["min_us"]
        self.hi = joint["max_us"]
        self.pwm = None  # None while limp
        self.us = 0  # pulse being sent; 0 = none

    def write(self, us):
        """Send pulses of `us` µs, clamped to [min_us, max_us]; returns the pulse sent."""
        if us < self.lo:
            us = self.lo
        elif us > self.hi:
            us = self.hi
        if us != self.us:
            if self.pwm is None:
                self.pwm = machine.PWM(self.pin, freq=self.freq, duty_ns=us * 1000)
            else:
                self.pwm.duty_ns(us * 1000)
            self.us = us
        return us

    def limp(self):
        """No more pulses: the servo's controller stops driving, the joint is free."""
        if self.pwm is not None:
            self.pwm.deinit()
            self.pwm = None
        self.us = 0
