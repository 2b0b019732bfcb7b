import { open, readFile } from "node:fs/promises";
import { RuntimeFailure } from "../util/errors.ts";

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** safetensors: 8-byte little-endian header length, a JSON header (padded to 8 bytes), then raw F32 data. */
export function encodeSafetensors(tensors: NamedTensor[], metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", ...metadata } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.length * 4;
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const body = Buffer.alloc(offset);
  let at = 0;
  for (const t of tensors) {
    // Copy through a fresh buffer so the bytes are little-endian whatever the host.
    const view = new DataView(body.buffer, body.byteOffset + at, t.data.length * 4);
    for (let i = 0; i < t.data.length; i++) view.setFloat32(4 * i, t.data[i]!, true);
    at += t.data.length * 4;
  }
  return Buffer.concat([head, Buffer.from(json), body]);
}

/** Bytes per value of the dtypes read; every one widens to F32 exactly. */
const WIDTH: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };
const widen = new DataView(new ArrayBuffer(4));

function bf16ToFloat(bits: number): number {
  widen.setUint32(0, bits << 16);
  return widen.getFloat32(0);
}

function f16ToFloat(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** A safetensors file's tensors as F32 (F32 read as it is; BF16 and F16, as Hugging Face repos ship them, widened). */
export async function readSafetensors(path: string): Promise<Map<string, NamedTensor>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch {
    throw new RuntimeFailure(`${path}: cannot be read`);
  }
  if (bytes.length < 8) throw new RuntimeFailure(`${path}: not a safetensors file (too short)`);
  const len = Number(bytes.readBigUInt64LE(0));
  if (len > bytes.length - 8) throw new RuntimeFailure(`${path}: truncated or not a safetensors file (its header claims ${len} bytes, the file has ${bytes.length}); use an earlier checkpoint`);
  let header: Record<string, any>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + len).toString("utf8"));
  } catch {
    throw new RuntimeFailure(`${path}: not a safetensors file (bad header)`);
  }
  const out = new Map<string, NamedTensor>();
  const base = 8 + len;
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const width = WIDTH[info.dtype as string];
    if (!width) throw new RuntimeFailure(`${path}: ${name} has dtype ${info.dtype}; the float types read are ${Object.keys(WIDTH).join(", ")}`);
    const [b, e] = info.data_offsets as [number, number];
    if (!(Number.isSafeInteger(b) && Number.isSafeInteger(e) && b >= 0 && e >= b && (e - b) % width === 0 && base + e <= bytes.length)) {
      throw new RuntimeFailure(`${path}: ${name} lies at bytes ${b}..${e} of the data, but the file holds ${bytes.length - base}; the file is truncated or damaged, use an earlier checkpoint`);
    }
    const data = new Float32Array((e - b) / width);
    const view = new DataView(bytes.buffer, bytes.byteOffset + base + b, e - b);
    if (info.dtype === "F32") for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(4 * i, true);
    else if (info.dtype === "BF16") for (let i = 0; i < data.length; i++) data[i] = bf16ToFloat(view.getUint16(2 * i, true));
    else for (let i = 0; i < data.length; i++) data[i] = f16ToFloat(view.getUint16(2 * i, true));
    out.set(name, { name, shape: info.shape, data });
  }
  return out;
}

export async function safetensorsHeader(path: string): Promise<Record<string, unknown>> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(8);
    await handle.read(head, 0, 8, 0);
    const len = Number(head.readBigUInt64LE(0));
    const json = Buffer.alloc(len);
    await handle.read(json, 0, len, 8);
    return JSON.parse(json.toString("utf8"));
  } finally {
    await handle.close();
  }
}
