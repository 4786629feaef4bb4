/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.spec.ts'],
  globalSetup: '<rootDir>/spec/setup/globalSetup.ts',
  globalTeardown: '<rootDir>/spec/setup/globalTeardown.ts',
  testTimeout: 30000,
  // Process-level tests fork children and time hand-overs: two workers match the two cores.
  maxWorkers: 2,
  transform: { '^.+\\.ts$': ['ts-jest', {}] },
};
