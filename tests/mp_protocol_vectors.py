"""Runs protocol_vectors.json through firmware/protocol.py and prints what came out, as JSON.

Written in the subset both interpreters share: test_protocol.py runs it in CPython (run()) and
under the MicroPython VM (as a script, firmware/ on its path) and compares both with the vectors.
Usage: micropython tests/mp_protocol_vectors.py [VECTORS.json]
"""
import binascii
import json
import sys


def hexs(data):
    return binascii.hexlify(bytes(data)).decode()


def unhex(text):
    return binascii.unhexlify(text)


def raises_value_error(f, *args):
    try:
        f(*args)
    except ValueError:
        return True
    return False


COUNTERS = ("frames", "crc_errors", "garbage", "oversize", "bad_escape", "version_errors", "short", "partial_start")


def decoded(P, chunks, taking=False):
    """Feed the chunks to a fresh decoder; its frames, counters, text and peer version. taking: take_text()
    after every chunk, as the host's link does after every read: frames and counters must not change (the
    text may: a stretch handed out early as text can still end as a frame of another version)."""
    d = P.FrameDecoder()
    frames = []
    for chunk in chunks:
        for ftype, seq, t_us, payload in d.feed(chunk):
            frames.append([ftype, seq, t_us, hexs(payload)])
        if taking:
            d.take_text()
    text = hexs(d.take_text())  # with an unfinished stretch of text (counted as garbage only once it ends)
    counters = {}
    for name in COUNTERS:
        counters[name] = getattr(d, name)
    out = {"frames": frames, "counters": counters, "text": text, "peer_version": d.peer_version}
    if taking:
        del out["text"]
    return out


def read_commands(P, chunks):
    """Feed the chunks to a fresh CommandReader (as bytearray + count, like the firmware); results and counters."""
    r = P.CommandReader()
    results = []
    for chunk in chunks:
        buf = bytearray(chunk + b"junk")  # bytes past n must be ignored
        for seq, name, rest in r.feed(buf, len(chunk)):
            results.append([seq, name, rest])
    counters = {}
    for name in ("lines", "crc_errors", "syntax_errors", "overflows"):
        counters[name] = getattr(r, name)
    return {"results": results, "counters": counters}


def frame_outputs(P, v, writer):
    """Every way the module can build (and read back) one frame vector."""
    payload = unhex(v["payload"])
    n = len(payload)
    out = {"encode": hexs(P.encode_frame(v["ftype"], v["seq"], v["t_us"], payload))}
    k = writer.pack(v["ftype"], v["seq"], v["t_us"], payload)
    out["writer_copy"] = hexs(writer.buf[:k])
    k = writer.pack(v["ftype"], v["seq"], v["t_us"], payload + b"\xaa\x7e", n)
    out["writer_prefix"] = hexs(writer.buf[:k])
    view = writer.payload_view()
    view[:n] = payload
    if n + 2 <= len(view):
        view[n:n + 2] = b"\x7e\x7d"  # stale bytes beyond n must not leak into the frame
    k = writer.pack(v["ftype"], v["seq"], v["t_us"], None, n)
    out["writer_in_place"] = hexs(writer.buf[:k])
    exact = P.FrameWriter(n)
    k = exact.pack(v["ftype"], v["seq"], v["t_us"], payload)
    out["writer_exact"] = hexs(exact.buf[:k])
    out["decoded"] = decoded(P, [unhex(v["frame"])])["frames"]
    return out


def run(vectors, P):
    """All outputs, keyed like the vectors."""
    out = {"constants": {}, "error_names": {}}
    for name in vectors["constants"]:
        out["constants"][name] = getattr(P, name)
    for code in P.ERROR_NAMES:
        out["error_names"][str(code)] = [P.ERROR_NAMES[code], P.error_text(code)]
    writer = P.FrameWriter(P.MAX_PAYLOAD)
    out["frames"] = [frame_outputs(P, v, writer) for v in vectors["frames"]]
    out["frame_errors"] = [raises_value_error(P.encode_frame, v["ftype"], 0, 0, bytes(v["size"]))
                           for v in vectors["frame_errors"]]
    out["writer_errors"] = [raises_value_error(P.FrameWriter(4).pack, 2, 0, 0, bytes(5)),
                            raises_value_error(P.FrameWriter(4).pack, 2, 0, 0, None, 5),
                            raises_value_error(P.FrameWriter(4).pack, 2, 0, 0, None),
                            raises_value_error(P.FrameWriter, P.MAX_PAYLOAD + 1)]
    out["commands"] = [P.encode_command(v["seq"], v["cmd"], v["args"]).decode() for v in vectors["commands"]]
    out["command_errors"] = [raises_value_error(P.encode_command, v["seq"], v["cmd"], v["args"])
                             for v in vectors["command_errors"]]
    out["commands_read"] = [read_commands(P, [v["line"].encode()])["results"] for v in vectors["commands"]]
    out["reader"] = []
    for v in vectors["reader"]:
        chunks = [unhex(c) for c in v["chunks"]]
        whole = b"".join(chunks)
        out["reader"].append({"as_given": read_commands(P, chunks),
                              "byte_by_byte": read_commands(P, (whole[i:i + 1] for i in range(len(whole))))})
    out["decoder"] = []
    for v in vectors["decoder"]:
        chunks = [unhex(c) for c in v["chunks"]]
        whole = b"".join(chunks)
        out["decoder"].append({"as_given": decoded(P, chunks), "joined": decoded(P, [whole]),
                               "byte_by_byte": decoded(P, (whole[i:i + 1] for i in range(len(whole)))),
                               "byte_by_byte_taking": decoded(P, (whole[i:i + 1] for i in range(len(whole))), True)})
    out["unwrap"] = []
    for v in vectors["unwrap"]:
        u = P.Unwrapper(v["period"])
        out["unwrap"].append([u(x) for x in v["values"]])
    out["ticks_masked"] = [P.encode_frame(2, 70000, P.TICKS_PERIOD + 5, b"") == P.encode_frame(2, 70000 - 65536, 5, b""),
                           hexs(writer.buf[:writer.pack(2, 70000, P.TICKS_PERIOD + 5, b"")]) == hexs(P.encode_frame(2, 4464, 5, b""))]
    out["unwrap_ticks"] = P.unwrap_ticks([P.TICKS_PERIOD - 1, 0, 7])
    out["unwrap_seqs"] = P.unwrap_seqs([65535, 0, 2])
    out["acks"] = []
    for v in vectors["acks"]:
        payload = P.ack_payload(v["cmd_seq"], v["code"], unhex(v["data"]))
        seq, code, data = P.parse_ack(payload)
        out["acks"].append([hexs(payload), seq, code, hexs(data)])
    out["ack_too_short"] = raises_value_error(P.parse_ack, b"\x01\x00")
    out["acks_into"] = []  # the device's way: into a frame's preallocated payload view of `room` bytes
    for v in vectors["acks_into"]:
        view = P.FrameWriter(v["room"]).payload_view()
        out["acks_into"].append(hexs(view[:P.ack_into(view, v["cmd_seq"], v["code"], unhex(v["data"]))]))
    out["logs"] = []
    for v in vectors["logs"]:
        payload = P.log_payload(v["level"], v["text"])
        out["logs"].append([hexs(payload), list(P.parse_log(payload))])
    out["log_empty"] = raises_value_error(P.parse_log, b"")
    out["logs_into"] = []
    for v in vectors["logs_into"]:
        view = P.FrameWriter(v["room"]).payload_view()
        out["logs_into"].append(hexs(view[:P.log_into(view, v["level"], v["text"])]))
    out["chunks"] = [[P.encode_chunk(unhex(v["data"])), hexs(P.decode_chunk(v["arg"]))] for v in vectors["chunks"]]
    out["chunk_errors"] = [raises_value_error(P.decode_chunk, arg) for arg in vectors["chunk_errors"]]
    out["chunk_too_big"] = raises_value_error(P.encode_chunk, bytes(P.CHUNK + 1))
    out["records"] = []
    for v in vectors["records"]:
        line, end = P.encode_record(v["seq"], unhex(v["data"]), v["start"])
        out["records"].append([hexs(line), end])
    out["record_errors"] = [raises_value_error(P.encode_record, 0, b"x", 0), raises_value_error(P.encode_record, 1, b"x", 1),
                            raises_value_error(P.encode_record, 1, b"", 0)]
    out["records_opened"] = []
    reader = P.CommandReader()
    for v in vectors["records_opened"]:
        line = bytearray(unhex(v["line"]) + b"junk")  # bytes past k must be ignored
        n = reader.open_record(line, len(line) - 4)
        got = [n]
        if n >= 0:
            got += [reader.record[0], reader.record[1], hexs(line[P.REC_HEAD:P.REC_HEAD + n])]
        out["records_opened"].append(got)
    out["records_counted"] = [reader.lines, reader.crc_errors]
    return out


if __name__ == "__main__":
    import protocol

    here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
    path = sys.argv[1] if len(sys.argv) > 1 else here + "/protocol_vectors.json"
    with open(path) as f:
        vectors = json.load(f)
    out = run(vectors, protocol)
    sep = "{"
    for key in out:  # piece by piece: the whole text at once would not fit the VM's heap
        sys.stdout.write(sep + json.dumps(key) + ":")
        sep = ","
        value = out[key]
        if isinstance(value, list):
            mark = "["
            for item in value:
                sys.stdout.write(mark)
                sys.stdout.write(json.dumps(item))
                mark = ","
            sys.stdout.write("[]" if mark == "[" else "]")
        else:
            sys.stdout.write(json.dumps(value))
    print("}")
