import { open, type FileHandle } from "node:fs/promises";

/** NumPy .npy format 1.0, dtype `<u4`, C order: `numpy.load(path, mmap_mode="r")` reads shards as they are. */
export function npyHeader(rows: number, cols: number): Buffer {
  const dict = `{'descr': '<u4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  // Magic (6) + version (2) + length (2) + dict + padding + '\n' is a multiple of 64 bytes.
  const unpadded = 10 + dict.length + 1;
  const padded = Math.ceil(unpadded / 64) * 64;
  const header = Buffer.alloc(padded, 0x20);
  header.write("\x93NUMPY", 0, "latin1");
  header[6] = 1;
  header[7] = 0;
  header.writeUInt16LE(padded - 10, 8);
  header.write(dict, 10, "latin1");
  header[padded - 1] = 0x0a;
  return header;
}

export interface NpyInfo {
  rows: number;
  cols: number;
  dataOffset: number;
}

export class NpyFormatError extends Error {}

export function parseNpyHeader(bytes: Uint8Array, where: string): NpyInfo {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 10 || buf.toString("latin1", 0, 6) !== "\x93NUMPY") throw new NpyFormatError(`${where}: not a .npy file (bad magic)`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const dict = buf.toString("latin1", start, start + headerLen);
  const descr = dict.match(/'descr':\s*'([^']+)'/)?.[1];
  const fortran = dict.match(/'fortran_order':\s*(True|False)/)?.[1];
  const shape = dict.match(/'shape':\s*\((\d+),\s*(\d+)\s*,?\)/);
  if (descr !== "<u4") throw new NpyFormatError(`${where}: dtype ${descr ?? "?"}, expected '<u4' (uint32 token ids)`);
  if (fortran !== "False") throw new NpyFormatError(`${where}: Fortran order, expected C order`);
  if (!shape) throw new NpyFormatError(`${where}: shape is not 2-D (sequences, sequence_length)`);
  return { rows: Number(shape[1]), cols: Number(shape[2]), dataOffset: start + headerLen };
}

/** Reads the header of a shard file on disk. */
export async function readNpyInfo(path: string): Promise<NpyInfo> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    const info = parseNpyHeader(head.subarray(0, bytesRead), path);
    const { size } = await handle.stat();
    const expected = info.dataOffset + info.rows * info.cols * 4;
    if (size !== expected) throw new NpyFormatError(`${path}: ${size} bytes, the header's shape needs ${expected}`);
    return info;
  } finally {
    await handle.close();
  }
}

/** Reads sequences [first, first+count) of a shard. */
export async function readSequences(path: string, info: NpyInfo, first: number, count: number): Promise<Uint32Array> {
  const handle: FileHandle = await open(path, "r");
  try {
    const bytes = Buffer.alloc(count * info.cols * 4);
    await handle.read(bytes, 0, bytes.length, info.dataOffset + first * info.cols * 4);
    const out = new Uint32Array(count * info.cols);
    for (let i = 0; i < out.length; i++) out[i] = bytes.readUInt32LE(4 * i);
    return out;
  } finally {
    await handle.close();
  }
}
