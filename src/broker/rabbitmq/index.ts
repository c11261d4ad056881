/**
 * The RabbitMQ adapter's own exports, for tests and tools that talk to RabbitMQ directly (raw
 * publishes, topology clean-up). Importing this loads amqplib.
 *
 * @module
 */
export * from './topology.js';
export * from './connection.js';
export * from './rabbitmq-bus.js';
