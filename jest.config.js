/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  testMatch: ['<rootDir>/__test__/**/*.test.ts'],
  testTimeout: 30000,
  // Native addon + real redis-server processes: keep the 2-core machine unsaturated.
  maxWorkers: 2,
  // one Redis Cluster and one Sentinel set-up for the whole run (cluster/sentinel modes)
  globalSetup: '<rootDir>/__test__/global-setup.ts',
  globalTeardown: '<rootDir>/__test__/global-teardown.ts',
}
