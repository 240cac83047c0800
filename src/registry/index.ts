/** The registry side's public API: image references, the image fetcher, and the credentials seam. */
export type { FetchOptions, FetchedModule, ImageFetcher } from './types.js';
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
  staticCredentials,
  type Authenticator,
  type CredentialProvider,
  type RegistryCredentials,
} from './auth.js';
export { isLoopbackHost } from './transport.js';
export { MANIFEST_ACCEPT } from './media-types.js';
