/** The registry side's public API: image references, pull, push, credentials and the module cache seam. */
export type { FetchOptions, FetchedModule, ImageFetcher, ModuleCache, TransferProgress } from './types.js';
export {
  checkImageReference,
  parseImageReference,
  DEFAULT_TAG,
  DOCKER_HUB,
  type FileReference,
  type ImageReference,
  type OciLayoutReference,
  type RegistryReference,
} from './reference.js';
export {
  createImageFetcher,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_IMAGE_BYTES,
  DEFAULT_MAX_TAR_ENTRIES,
  DEFAULT_TIMEOUT_MS,
  type ClosableImageFetcher,
  type ImageFetcherOptions,
} from './image-fetcher.js';
export {
  anonymousCredentials,
  describeCredentials,
  staticCredentials,
  type Authenticator,
  type CredentialProvider,
  type RegistryCredentials,
} from './auth.js';
export {
  chainCredentials,
  defaultDockerConfigPath,
  dockerConfigCredentials,
  parseDockerConfig,
  runCredentialHelper,
  type DockerConfigData,
  type HelperRunner,
} from './credentials.js';
export { DEFAULT_RETRIES } from './transport.js';
export { layerNoteModules } from './layer-cache.js';
export { logTransferProgress, PROGRESS_THRESHOLD_BYTES } from './progress-log.js';
export { isLoopbackHost } from './transport.js';
export { MANIFEST_ACCEPT } from './media-types.js';
export {
  buildImage,
  checkPushableModule,
  createImagePusher,
  DEFAULT_PUSH_TIMEOUT_MS,
  IMAGE_FORMATS,
  imageFileName,
  parsePushReference,
  writeOciLayout,
  type BuiltImage,
  type ImageFormat,
  type ImagePusher,
  type ImagePusherOptions,
  type LayoutResult,
  type PushResult,
} from './push/index.js';
