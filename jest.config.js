/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__test__/**/*.test.ts'],
  testTimeout: 30000,
  // Native addon + real redis-server processes: keep the 2-core machine unsaturated.
  maxWorkers: 2,
}
