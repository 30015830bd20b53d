import { S3FileSystem, S3ReaderConstructor } from "@dcpjs/s3";
import { freshUri, testClient } from "../support/s3.js";
import { describeFileSystemConformance } from "./filesystem-conformance.js";

for (const [name, readerConstructor] of [
  ["sequential reader", S3ReaderConstructor.sequential()],
  ["range-based reader", S3ReaderConstructor.rangeBased({ bufferSize: 16 })],
] as const) {
  describeFileSystemConformance(
    `S3FileSystem (${name}, real S3 server)`,
    () => ({
      fs: new S3FileSystem({ client: testClient(), readerConstructor }),
      root: async () => freshUri(),
    }),
    { rmMissingThrows: false },
  );
}
